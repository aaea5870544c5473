"""Samples of the pod's shared network namespace: netlink sock_diag first, /proc as the fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from sidecar.adapters.traffic import procnet
from sidecar.adapters.traffic.sockdiag import SockDiag
from sidecar.errors import AdapterError
from sidecar.model.traffic import TrafficSample

if TYPE_CHECKING:
    from sidecar.settings import TrafficSourceName

log = structlog.get_logger(__name__)


class NetnsTrafficSource:
    """Reads the sockets on the watched ports; `auto` falls back to /proc if netlink fails."""

    def __init__(
        self,
        ports: frozenset[int],
        source: TrafficSourceName = "auto",
        proc_net: Path = Path("/proc/net"),
    ) -> None:
        self._ports = ports
        self._source = source
        self._proc_net = proc_net
        self._diag = SockDiag()

    @property
    def source(self) -> str:
        """The source in use now: netlink or proc."""
        return "proc" if self._source == "proc" else "netlink"

    def read_now(self, taken_at: float) -> TrafficSample:
        """One blocking sample; the async `sample` runs this in a worker thread."""
        if self._source != "proc":
            try:
                listening, conns = self._diag.read(self._ports)
                return TrafficSample(taken_at, listening, conns, has_timing=True)
            except AdapterError as e:
                if self._source == "netlink":
                    raise
                log.warning("traffic_source_fallback", source="proc", reason=str(e))
                self._source = "proc"
        listening, conns = procnet.read(self._ports, self._proc_net)
        return TrafficSample(taken_at, listening, conns, has_timing=False)

    async def sample(self) -> TrafficSample:
        """Sample the namespace without blocking the event loop."""
        taken_at = asyncio.get_running_loop().time()
        return await asyncio.to_thread(self.read_now, taken_at)

    def close(self) -> None:
        """Release the netlink socket."""
        self._diag.close()
