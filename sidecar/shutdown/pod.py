"""What every flight of this pod acts on and observes, built once by the coordinator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from sidecar.model.plan import ReleaseGroup
    from sidecar.settings import Settings
    from sidecar.shutdown.hooks import HookLedger
    from sidecar.shutdown.observe import TrafficMonitor
    from sidecar.shutdown.protocols import ClusterApi, ProcessProbe, ProxyAdmin, RegistryPhase


@dataclass(frozen=True)
class Pod:
    """The pod's settings, release groups, hook ledger, sampler and adapters."""

    settings: Settings
    groups: tuple[ReleaseGroup, ...]
    hooks: HookLedger
    monitor: TrafficMonitor
    processes: ProcessProbe
    #: Set when our own SIGTERM arrives (proof of the apps' exit in native mode).
    own_sigterm: asyncio.Event
    proxy: ProxyAdmin | None
    api: ClusterApi | None
    announce: RegistryPhase | None
    retire: RegistryPhase | None
