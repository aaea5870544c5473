"""Scripted inbound traffic for the phases' tests: connections dated on the loop clock, sampled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sidecar.model.traffic import Connection, TcpState, TrafficSample, policy_for
from sidecar.shutdown.observe import TrafficMonitor
from sidecar.shutdown.protocols import TrafficSource

APP_PORT, PROXY_PORT = 8080, 15006


@dataclass
class Exchange:
    """One inbound connection dated on the loop clock, rendered as each sample would see it.

    It opens with a request at `received_at`, is answered at `answered_at` (None: never), and
    the client closes it at `closed_at` (None: kept alive). Between answer and close it is an
    idle keep-alive connection; a test may move the dates while a phase runs.
    """

    port: int
    received_at: float
    answered_at: float | None = None
    closed_at: float | None = None
    key: int = 0
    peer_ip: str = "10.9.9.9"

    def seen_at(self, now: float, *, has_timing: bool) -> Connection | None:
        """The socket as a sample at `now` reads it; None before it opens or after it closes."""
        if now < self.received_at or (self.closed_at is not None and now >= self.closed_at):
            return None
        conn = Connection(self.port, self.peer_ip, 40000 + self.key, TcpState.ESTABLISHED, self.key)
        if not has_timing:
            return conn
        since_request_ms = round((now - self.received_at) * 1000)
        if self.answered_at is None or now < self.answered_at:
            # Asked, not answered: nothing acknowledged yet.
            return conn._replace(
                last_recv_ms=since_request_ms,
                last_send_ms=since_request_ms,
                bytes_acked=0,
                bytes_received=100,
            )
        return conn._replace(
            last_recv_ms=since_request_ms,
            last_send_ms=round((now - self.answered_at) * 1000),
            bytes_acked=200,
            bytes_received=100,
        )


class ScriptedTraffic:
    """Answers samples from what the test sets: listening ports and connections."""

    def __init__(self, *exchanges: Exchange, has_timing: bool = True) -> None:
        self.listening = {APP_PORT, PROXY_PORT}
        self.busy_until: float | None = None  # loop time until which a request is in flight
        self.exchanges = list(exchanges)
        self.has_timing = has_timing

    async def sample(self) -> TrafficSample:
        now = asyncio.get_running_loop().time()
        conns: list[Connection] = []
        if self.busy_until is not None and now < self.busy_until:
            # A request that arrived just now and is not answered yet.
            conns.append(
                Connection(
                    APP_PORT, "10.9.9.9", 50000, TcpState.ESTABLISHED, 1, 0, 0, 0, 5000, 10, 10
                ),
            )
        for exchange in self.exchanges:
            conn = exchange.seen_at(now, has_timing=self.has_timing)
            if conn is not None:
                conns.append(conn)
        return TrafficSample(
            now, frozenset(self.listening), tuple(conns), has_timing=self.has_timing
        )


class StuckTraffic(ScriptedTraffic):
    """A client that never stops asking, and an app that never exits."""

    def __init__(self) -> None:
        super().__init__()
        self.busy_until = float("inf")


@contextlib.asynccontextmanager
async def sampling(
    source: TrafficSource,
    inbound_ports: Iterable[int] = (APP_PORT, PROXY_PORT),
    interval_seconds: float = 0.25,
) -> AsyncIterator[TrafficMonitor]:
    """A started monitor over `source`, stopped when the block ends."""
    monitor = TrafficMonitor(source, policy_for(inbound_ports, ""), interval_seconds)
    monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()
