"""The release plan: which containers are answered together, in which order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sidecar.settings import ContainerSpec, Settings


@dataclass(frozen=True)
class ReleaseGroup:
    """Containers whose hooks are answered at the same moment."""

    index: int
    containers: tuple[ContainerSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The containers' names."""
        return tuple(c.name for c in self.containers)

    @property
    def ports(self) -> frozenset[int]:
        """Listening ports the group owns."""
        return frozenset(p for c in self.containers for p in c.ports)

    @property
    def process_names(self) -> frozenset[str]:
        """Process names the group runs."""
        return frozenset(n for c in self.containers for n in c.process_names)

    @property
    def is_proxy(self) -> bool:
        """Whether this is the mesh proxy's group (always the last)."""
        return any(c.role == "proxy" for c in self.containers)


def release_groups(settings: Settings) -> tuple[ReleaseGroup, ...]:
    """App groups in their configured order, then the proxy alone."""
    by_name = {c.name: c for c in settings.containers}
    groups = [
        ReleaseGroup(i, tuple(by_name[n] for n in names))
        for i, names in enumerate(settings.release_order)
    ]
    if settings.proxy is not None:
        groups.append(ReleaseGroup(len(groups), (settings.proxy,)))
    return tuple(groups)


def inbound_ports(settings: Settings) -> frozenset[int]:
    """Ports whose inbound connections are the pod's traffic: every container's own ports."""
    return frozenset(p for c in settings.containers for p in c.ports)
