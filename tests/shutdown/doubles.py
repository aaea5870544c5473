"""Small test doubles implementing the phases' Protocols: stuck ones and well-behaved ones.

It holds in-process Protocol doubles for the phases (scripted traffic in doubles_traffic.py,
re-exported here); fakes of remote servers live in tests/fakes/, and the drill's stand-ins
(API server, kubelet, data plane) in sidecar/drill/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from sidecar import settings
from sidecar.errors import AdapterError
from sidecar.model.report import Result
from sidecar.model.rotation import Endpoint, Slice
from sidecar.model.traffic import TrafficSample
from tests.shutdown.doubles_traffic import (
    APP_PORT,
    PROXY_PORT,
    Exchange,
    ScriptedTraffic,
    StuckTraffic,
    sampling,
)

__all__ = [
    "APP_PORT",
    "POD_IP",
    "POD_UID",
    "PROXY_PORT",
    "Change",
    "Exchange",
    "HangingProcesses",
    "HangingProxy",
    "HangingRegistry",
    "HangingSampler",
    "NoProcesses",
    "RecordingProxy",
    "ScriptedPod",
    "ScriptedProcesses",
    "ScriptedSlices",
    "ScriptedTraffic",
    "StuckApi",
    "StuckTraffic",
    "endpoint",
    "forever",
    "pod_doc",
    "pod_settings",
    "sampling",
    "slice_of",
]


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


def pod_doc(
    *, deleting_grace_seconds: int | None = None, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Our pod as JSON: deleted with that grace (its deadline counted from now), or running."""
    metadata: dict[str, Any] = {"uid": POD_UID}
    if deleting_grace_seconds is not None:
        deadline = time.gmtime(time.time() + deleting_grace_seconds)
        metadata["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", deadline)
        metadata["deletionGracePeriodSeconds"] = deleting_grace_seconds
    return {"metadata": metadata, "spec": spec or {}, "status": {"podIP": POD_IP}}


class ScriptedPod(ScriptedSlices):
    """The API server: each read of our pod gets the next scripted answer after its delay.

    The last answer repeats. EndpointSlices behave as in ScriptedSlices.
    """

    def __init__(
        self,
        answers: Sequence[tuple[float, dict[str, Any] | Exception]],
        first: Sequence[Slice] = (),
        **kw: Any,
    ) -> None:
        super().__init__(first, **kw)
        self.answers = list(answers)
        self.reads = 0

    async def read_pod(self) -> dict[str, Any]:
        delay, answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        await asyncio.sleep(delay)
        if isinstance(answer, Exception):
            raise answer
        return answer
