"""Samples of the pod's shared network namespace: netlink sock_diag first, /proc as the fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from sidecar.errors import AdapterError
from sidecar.model.traffic import TrafficSample

if TYPE_CHECKING:
    from sidecar.adapters.traffic.sockdiag import SockDiag
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
        #: Opened at the first sample: an idle agent holds no netlink socket, and its parsers
        #: are not imported while it waits (docs/benchmarks.md: its memory at rest).
        self._diag: SockDiag | None = None
        #: A sample runs in a worker thread that outlives a cancelled wait for it: close()
        #: waits for it, and a sample after close() opens nothing.
        self._lock = threading.Lock()
        self._closed = False

    @property
    def source(self) -> str:
        """The source in use now: netlink or proc."""
        return "proc" if self._source == "proc" else "netlink"

    def read_now(self, taken_at: float) -> TrafficSample:
        """One blocking sample; the async `sample` runs this in a worker thread."""
        if self._source != "proc":
            try:
                with self._lock:
                    listening, conns = self._netlink().read(self._ports)
                return TrafficSample(taken_at, listening, conns, has_timing=True)
            except AdapterError as e:
                if self._source == "netlink" or self._closed:
                    raise
                log.warning("traffic_source_fallback", source="proc", reason=str(e))
                self._source = "proc"
        from sidecar.adapters.traffic import procnet  # noqa: PLC0415 - the fallback, rarely used

        listening, conns = procnet.read(self._ports, self._proc_net)
        return TrafficSample(taken_at, listening, conns, has_timing=False)

    def _netlink(self) -> SockDiag:
        """The netlink reader, opened at first use; called with the lock held."""
        if self._closed:
            raise AdapterError("the traffic source is closed")
        if self._diag is None:
            from sidecar.adapters.traffic.sockdiag import SockDiag  # noqa: PLC0415 - see __init__

            self._diag = SockDiag()
        return self._diag

    async def sample(self) -> TrafficSample:
        """Sample the namespace without blocking the event loop.

        Dated when the dump is done, not when it began: tcp_info's "milliseconds since the last
        byte" are counted back from then, so an arrival is never dated earlier than it was and
        a silence never looks longer than it was (a dump of 10 000 sockets takes ~25 ms).
        """
        loop = asyncio.get_running_loop()
        sample = await asyncio.to_thread(self.read_now, loop.time())
        return dataclasses.replace(sample, taken_at=loop.time())

    def close(self) -> None:
        """Release the netlink socket, if a sample opened one (after a sample still running)."""
        with self._lock:
            self._closed = True
            if self._diag is not None:
                self._diag.close()
