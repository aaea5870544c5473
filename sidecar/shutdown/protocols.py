"""What the phases need from the outside world, declared here and implemented by adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sidecar.model.report import PhaseRecord, Release, Result
    from sidecar.model.rotation import Slice
    from sidecar.model.traffic import TrafficSample


class TrafficSource(Protocol):
    """A sample of the sockets on the watched ports."""

    async def sample(self) -> TrafficSample:
        """Take one sample now."""
        ...


class ProcessProbe(Protocol):
    """Whether processes of given names still run (None: cannot see them)."""

    async def running(self, names: frozenset[str]) -> bool | None:
        """Look now."""
        ...


class ProxyAdmin(Protocol):
    """The mesh proxy's admin API."""

    async def drain_inbound(self) -> None:
        """Start a graceful inbound drain."""
        ...

    async def active_connections(self) -> dict[str, int]:
        """Active downstream connections per listener."""
        ...

    async def quit(self) -> None:
        """Exit now."""
        ...

    async def quit_pilot_agent(self) -> bool:
        """Ask the mesh agent to exit; False when there is none."""
        ...


class PodSource(Protocol):
    """Our pod as the API server has it (raises ApiError)."""

    async def read_pod(self) -> dict[str, Any]:
        """One GET of the pod."""
        ...


class SliceSource(Protocol):
    """The EndpointSlices that may hold our pod (raises ApiError)."""

    async def list_slices(self, services: frozenset[str] | None = None) -> tuple[list[Slice], str]:
        """The slices in our namespace (of those Services, if given) and the list's revision."""
        ...

    def slice_snapshots(
        self, services: frozenset[str], first: list[Slice], revision: str, deadline: float
    ) -> AsyncIterator[list[Slice]]:
        """Each new state of those Services' slices, watched from `revision`, until `deadline`."""
        ...


class ClusterApi(PodSource, SliceSource, Protocol):
    """What confirm and unroute need of the API server, in one client."""


class EventSink(Protocol):
    """Kubernetes Events on our pod."""

    async def post_event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Post one Event (raises ApiError)."""
        ...


class RegistryPhase(Protocol):
    """Announce or retire against external registries (later issues)."""

    async def run(self, deadline: float) -> Result:
        """Do the work before `deadline` and say how it went."""
        ...


class ShutdownListener(Protocol):
    """Told about milestones as they happen (metrics, events)."""

    def phase_finished(self, record: PhaseRecord) -> None:
        """A phase ended."""

    def container_released(self, release: Release) -> None:
        """A container's hook was answered."""

    def shutdown_finished(self, summary: dict[str, Any]) -> None:
        """The whole shutdown ended."""
