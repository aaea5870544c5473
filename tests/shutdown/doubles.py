"""Small test doubles implementing the phases' Protocols: stuck ones and well-behaved ones.

It holds in-process Protocol doubles for the phases; fakes of remote servers live in tests/fakes/,
and the drill's stand-ins (API server, kubelet, data plane) in sidecar/drill/.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar import settings
from sidecar.errors import AdapterError
from sidecar.model.report import Result
from sidecar.model.rotation import Endpoint, Slice
from sidecar.model.traffic import Connection, TcpState, TrafficSample, policy_for
from sidecar.shutdown.observe import TrafficMonitor
from sidecar.shutdown.protocols import TrafficSource

APP_PORT, PROXY_PORT = 8080, 15006


def pod_settings(**overrides: Any) -> settings.Settings:
    """An app and an Envoy sidecar, 30 s of grace, and whatever the test changes."""
    data: dict[str, Any] = {
        "containers": [
            {"name": "app", "ports": [APP_PORT]},
            {"name": "envoy", "role": "proxy", "ports": [PROXY_PORT]},
        ],
        "server": {"allow_unauthenticated": True},
        "budget": {"grace_seconds": 30},
        "phases": {
            "unroute_fallback_delay_seconds": 2,
            "quiet_window_seconds": 2,
            "quiesce_min_seconds": 1,
        },
        "envoy": {"admin_url": "http://127.0.0.1:1"},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return settings.from_mapping(data, {})


async def forever() -> Any:
    """A call to the outside world that never answers."""
    await asyncio.Event().wait()


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


class HangingSampler:
    """A traffic source whose sample never returns."""

    async def sample(self) -> TrafficSample:
        return await forever()  # type: ignore[no-any-return]


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


class NoProcesses:
    """The process namespace is not shared: nothing to see."""

    async def running(self, names: frozenset[str]) -> bool | None:
        return None


class HangingProcesses:
    async def running(self, names: frozenset[str]) -> bool | None:
        return await forever()  # type: ignore[no-any-return]


class ScriptedProcesses:
    """A shared process namespace in which the names the test keeps in `names` run."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked: list[frozenset[str]] = []

    async def running(self, names: frozenset[str]) -> bool | None:
        self.asked.append(names)
        if not names:
            return None  # as the psutil adapter: nothing asked, nothing seen
        return bool(names & self.names)


class RecordingProxy:
    """An Envoy admin that answers and remembers what it was asked.

    `pilot_agent`: whether a mesh agent runs beside it (asked to quit only then).
    `failing`: calls that raise an AdapterError naming the call, after being recorded.
    """

    def __init__(self, *, pilot_agent: bool = False, failing: Iterable[str] = ()) -> None:
        self.calls: list[str] = []
        self.pilot_agent = pilot_agent
        self.failing = frozenset(failing)

    def _called(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failing:
            raise AdapterError(f"{name}: connection refused")

    async def drain_inbound(self) -> None:
        self._called("drain_inbound")

    async def active_connections(self) -> dict[str, int]:
        return {}

    async def quit(self) -> None:
        self._called("quit")

    async def quit_pilot_agent(self) -> bool:
        if not self.pilot_agent:
            return False
        self._called("quit_pilot_agent")
        return True


class HangingProxy(RecordingProxy):
    async def drain_inbound(self) -> None:
        await forever()

    async def quit(self) -> None:
        await forever()


POD_UID, POD_IP = "0000-pod-uid", "10.1.2.3"


def endpoint(
    *, ready: bool = True, terminating: bool = False, uid: str = POD_UID, ip: str = POD_IP
) -> Endpoint:
    """One endpoint of a slice, ours unless told otherwise."""
    return Endpoint((ip,), uid, ready=ready, serving=ready, terminating=terminating)


def slice_of(service: str, *endpoints: Endpoint, name: str = "") -> Slice:
    """A managed IPv4 slice of `service`."""
    return Slice(name or f"{service}-abcde", service, "IPv4", endpoints)


#: A change the watch delivers this many seconds after it began: a new state, or a failure.
Change = tuple[float, list[Slice] | Exception]


class ScriptedSlices:
    """EndpointSlices as the API server has them: a first list, then changes at set times.

    After its last change the watch stays silent until the deadline, as the adapter's does.
    """

    def __init__(
        self,
        first: Sequence[Slice],
        *,
        revision: str = "41",
        changes: Sequence[Change] = (),
        list_error: Exception | None = None,
    ) -> None:
        self.first = list(first)
        self.revision = revision
        self.changes = list(changes)
        self.list_error = list_error
        self.watched: list[tuple[frozenset[str], str]] = []

    async def list_slices(self, services: frozenset[str] | None = None) -> tuple[list[Slice], str]:
        if self.list_error is not None:
            raise self.list_error
        return list(self.first), self.revision

    async def slice_snapshots(
        self, services: frozenset[str], first: list[Slice], revision: str, deadline: float
    ) -> AsyncIterator[list[Slice]]:
        self.watched.append((services, revision))
        loop = asyncio.get_running_loop()
        began = loop.time()
        for after_seconds, change in self.changes:
            await asyncio.sleep(max(0.0, began + after_seconds - loop.time()))
            if isinstance(change, Exception):
                raise change
            yield change
        await asyncio.sleep(max(0.0, deadline - loop.time()))


class StuckApi:
    """Confirms a deletion with `grace_seconds`, then never answers about EndpointSlices."""

    def __init__(self, grace_seconds: int = 30) -> None:
        self.grace_seconds = grace_seconds

    async def read_pod(self) -> dict[str, Any]:
        deadline = time.gmtime(time.time() + self.grace_seconds)
        return {
            "metadata": {
                "uid": "0000-stuck",
                "deletionTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", deadline),
                "deletionGracePeriodSeconds": self.grace_seconds,
            }
        }

    async def list_slices(self, services: frozenset[str] | None = None) -> tuple[list[Slice], str]:
        return await forever()  # type: ignore[no-any-return]

    async def slice_snapshots(
        self, services: frozenset[str], first: list[Slice], revision: str, deadline: float
    ) -> AsyncIterator[list[Slice]]:
        await forever()
        yield []


class HangingRegistry:
    async def run(self, deadline: float) -> Result:
        return await forever()  # type: ignore[no-any-return]
