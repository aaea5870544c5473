"""Small test doubles implementing the phases' Protocols: stuck ones and well-behaved ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from sidecar import settings
from sidecar.model.report import Result
from sidecar.model.rotation import Slice
from sidecar.model.traffic import Connection, TcpState, TrafficSample

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


class ScriptedTraffic:
    """Answers samples from what the test sets: listening ports and connections."""

    def __init__(self) -> None:
        self.listening = {APP_PORT, PROXY_PORT}
        self.busy_until: float | None = None  # loop time until which a request is in flight

    async def sample(self) -> TrafficSample:
        now = asyncio.get_running_loop().time()
        conns: tuple[Connection, ...] = ()
        if self.busy_until is not None and now < self.busy_until:
            # A request that arrived just now and is not answered yet.
            conns = (
                Connection(
                    APP_PORT, "10.9.9.9", 50000, TcpState.ESTABLISHED, 1, 0, 0, 0, 5000, 10, 10
                ),
            )
        return TrafficSample(now, frozenset(self.listening), conns, has_timing=True)


class StuckTraffic(ScriptedTraffic):
    """A client that never stops asking, and an app that never exits."""

    def __init__(self) -> None:
        super().__init__()
        self.busy_until = float("inf")


class HangingSampler:
    """A traffic source whose sample never returns."""

    async def sample(self) -> TrafficSample:
        return await forever()  # type: ignore[no-any-return]


class NoProcesses:
    """The process namespace is not shared: nothing to see."""

    async def running(self, names: frozenset[str]) -> bool | None:
        return None


class HangingProcesses:
    async def running(self, names: frozenset[str]) -> bool | None:
        return await forever()  # type: ignore[no-any-return]


class RecordingProxy:
    """An Envoy admin that answers and remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def drain_inbound(self) -> None:
        self.calls.append("drain_inbound")

    async def active_connections(self) -> dict[str, int]:
        return {}

    async def quit(self) -> None:
        self.calls.append("quit")

    async def quit_pilot_agent(self) -> bool:
        return False


class HangingProxy(RecordingProxy):
    async def drain_inbound(self) -> None:
        await forever()

    async def quit(self) -> None:
        await forever()


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
