"""The coordinator under faults: restart flights upgraded by a deletion, unconfirmed flights."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.errors import ApiError
from sidecar.model.report import Outcome, PhaseRecord, Release, Result
from sidecar.shutdown.coordinator import Coordinator
from tests.shutdown.doubles import (
    HangingRegistry,
    NoProcesses,
    RecordingProxy,
    ScriptedPod,
    ScriptedTraffic,
    endpoint,
    pod_doc,
    pod_settings,
    slice_of,
)

pytestmark = pytest.mark.looptime

RUNNING = pod_doc()


def deleting() -> dict[str, Any]:
    """Our pod, deleted now with 30 s of grace (its deletionTimestamp counts from now)."""
    return pod_doc(deleting_grace_seconds=30)


async def _until(predicate: Any, seconds: float = 60.0) -> None:
    """Wait on the (fake) loop clock until `predicate()` holds, failing after `seconds`."""
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_deletion_during_a_restart_flight_takes_it_over() -> None:
    # The app's liveness restart is being drained (a request in flight), then the pod is deleted
    # and its endpoint turns not ready.
    api = ScriptedPod(
        [(0.1, RUNNING), (0.1, deleting())],
        [slice_of("web", endpoint())],
        changes=[(0.5, [slice_of("web", endpoint(ready=False, terminating=True))])],
    )
    traffic = ScriptedTraffic()
    proxy = RecordingProxy()
    coordinator = Coordinator(
        pod_settings(), traffic=traffic, processes=NoProcesses(), proxy=proxy, api=api
    )
    loop = asyncio.get_running_loop()
    traffic.busy_until = loop.time() + 5
    app = asyncio.ensure_future(coordinator.hook("app"))
    await _until(lambda: coordinator.status().kind == "restart")
    envoy = asyncio.ensure_future(coordinator.hook("envoy"))
    await _until(lambda: coordinator.status().kind == "deletion")
    await coordinator.wait_released("app")
    assert not coordinator.is_released("envoy")  # the proxy waits for the app's exit
    traffic.listening.discard(8080)  # the kubelet's SIGTERM: the app exits
    await asyncio.gather(app, envoy)
    await coordinator.wait_finished()
    status = coordinator.status()
    assert [(r.container, r.reason) for r in status.releases] == [
        ("app", "turn"),
        ("envoy", "turn"),
    ]
    labels = [r.label for r in status.records]
    assert {"unroute", "quiesce", "exit", "release_proxy"} <= set(labels)
    assert proxy.calls == ["drain_inbound", "quit"]
    assert api.reads == 2  # the second hook re-confirmed
    await coordinator.close()


async def test_an_unconfirmed_hook_never_touches_the_proxy_whose_hook_never_came() -> None:
    # No API: a hook for the app alone (a live pod, the token leaked) runs its drain only.
    proxy = RecordingProxy(pilot_agent=True)
    coordinator = Coordinator(
        pod_settings(), traffic=ScriptedTraffic(), processes=NoProcesses(), proxy=proxy
    )
    await coordinator.hook("app")
    await coordinator.wait_finished()
    assert proxy.calls == []  # no drain_listeners, no quitquitquit, no pilot-agent quit
    status = coordinator.status()
    assert "exit" not in [r.label for r in status.records]  # nothing waits on the proxy's behalf
    release_proxy = next(r for r in status.records if r.label == "release_proxy")
    assert release_proxy.detail["proxy"] == "untouched: no proxy hook and no confirmed deletion"
    await coordinator.close()


async def test_after_an_unconfirmed_flight_a_real_deletion_is_coordinated_again() -> None:
    api = ScriptedPod(
        [(0.1, ApiError("get pod", 503, "HTTP 503: unavailable")), (0.1, deleting())],
        [slice_of("web", endpoint(ready=False, terminating=True))],
    )
    traffic = ScriptedTraffic()
    proxy = RecordingProxy()
    coordinator = Coordinator(
        pod_settings(), traffic=traffic, processes=NoProcesses(), proxy=proxy, api=api
    )
    await coordinator.hook("app")  # the API is down: unconfirmed, trusted by the token
    await coordinator.wait_finished()
    assert proxy.calls == []
    # Later the pod is really deleted: both hooks come and must wait for their turns again.
    traffic.listening.add(8080)
    loop = asyncio.get_running_loop()
    began = loop.time()
    app, envoy = (asyncio.ensure_future(coordinator.hook(n)) for n in ("app", "envoy"))
    await app
    assert loop.time() - began >= 1.0  # quiesce's minimum at least: not answered at once
    assert not envoy.done()
    traffic.listening.discard(8080)
    await envoy
    await coordinator.wait_finished()
    status = coordinator.status()
    assert status.kind == "deletion"
    assert [(r.container, r.reason) for r in status.releases] == [
        ("app", "turn"),
        ("envoy", "turn"),
    ]
    assert proxy.calls == ["drain_inbound", "quit"]
    await coordinator.close()


async def test_status_names_the_sequence_phase_while_announce_runs_beside_it() -> None:
    api = ScriptedPod([(0.0, deleting())], [slice_of("web", endpoint())])
    coordinator = Coordinator(
        pod_settings(),
        traffic=ScriptedTraffic(),
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        api=api,
        announce=HangingRegistry(),
    )
    coordinator.start("app")
    await _until(lambda: any(r.label == "confirm" for r in coordinator.status().records))
    await asyncio.sleep(1)  # fake time: unroute is watching, announce hangs beside it
    assert coordinator.status().stage == "unroute"
    await coordinator.close()


class SlowToStop(ScriptedTraffic):
    """A sampler that takes a second to stop, widening the end of a flight."""

    async def sample(self) -> Any:
        try:
            return await super().sample()
        except asyncio.CancelledError:
            await asyncio.sleep(1)
            raise


async def test_a_hook_after_a_restart_flights_last_answer_gets_a_flight_of_its_own() -> None:
    api = ScriptedPod([(0.0, RUNNING)])
    coordinator = Coordinator(
        pod_settings(), traffic=SlowToStop(), processes=NoProcesses(), proxy=RecordingProxy(),
        api=api,
    )  # fmt: skip
    await coordinator.hook("app")  # restart: drained, then released
    # The flight is still stopping its sampler; the restarted app's next hook comes now.
    assert coordinator.status().state != "finished"
    second = asyncio.ensure_future(coordinator.hook("app"))
    await asyncio.wait_for(second, 40)
    await coordinator.wait_finished()
    assert api.reads == 2
    assert [(r.container, r.reason) for r in coordinator.status().releases] == [("app", "restart")]
    await coordinator.close()


class BrokenListener:
    """A listener (metrics, Events) with a bug: every call raises."""

    def phase_finished(self, record: PhaseRecord) -> None:
        raise RuntimeError(record.label)

    def container_released(self, release: Release) -> None:
        raise RuntimeError(release.container)

    def shutdown_finished(self, summary: dict[str, Any]) -> None:
        raise RuntimeError(str(summary))


async def test_a_broken_listener_never_stops_the_sequence_or_the_answers() -> None:
    api = ScriptedPod([(0.0, deleting())], [slice_of("web", endpoint(ready=False))])
    traffic = ScriptedTraffic()
    coordinator = Coordinator(
        pod_settings(),
        traffic=traffic,
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        api=api,
        listener=BrokenListener(),
    )
    hooks = [asyncio.ensure_future(coordinator.hook(n)) for n in ("app", "envoy")]
    await coordinator.wait_released("app")
    traffic.listening.discard(8080)
    await asyncio.wait_for(asyncio.gather(*hooks), 40)
    await asyncio.wait_for(coordinator.wait_finished(), 40)
    status = coordinator.status()
    assert [(r.container, r.reason) for r in status.releases] == [
        ("app", "turn"),
        ("envoy", "turn"),
    ]
    assert status.summary is not None
    assert {r.label: r.outcome for r in status.records}["unroute"] is Outcome.OK
    await coordinator.close()


async def test_a_restart_is_answered_within_the_restarting_containers_own_grace() -> None:
    # The app's liveness probe kills it with 5 s of grace, not the pod's 30 (KEP-2238).
    spec = {
        "terminationGracePeriodSeconds": 30,
        "containers": [
            {"name": "app", "livenessProbe": {"terminationGracePeriodSeconds": 5}},
            {"name": "envoy"},
        ],
    }
    traffic = ScriptedTraffic()
    coordinator = Coordinator(
        pod_settings(),
        traffic=traffic,
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        api=ScriptedPod([(0.0, pod_doc(spec=spec))]),
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    traffic.busy_until = began + 60  # the app never drains
    await coordinator.hook("app")
    budget = coordinator.status().budget
    assert budget is not None
    assert budget.grace_seconds == 5
    assert loop.time() - began <= 5 - 1  # answered a margin before the kubelet's kill
    await coordinator.wait_finished()
    await coordinator.close()


class RecordingRegistry:
    """Announce or retire that answers at once and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, deadline: float) -> Result:
        self.runs += 1
        return Result(Outcome.OK, {"registries": {"eureka": {"outcome": "removed"}}})


@pytest.mark.parametrize(
    ("hooks", "runs"),
    [
        (("app",), 0),  # one hook, nothing confirmed: the registration of a live pod stays
        (("app", "envoy"), 1),  # every container's hook came, as in a real deletion
    ],
)
async def test_without_a_confirmed_deletion_registries_wait_for_every_containers_hook(
    hooks: tuple[str, ...], runs: int
) -> None:
    announce, retire = RecordingRegistry(), RecordingRegistry()
    traffic = ScriptedTraffic()
    traffic.listening.discard(8080)  # the app is gone as soon as it is released
    coordinator = Coordinator(
        pod_settings(),
        traffic=traffic,
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        announce=announce,
        retire=retire,
    )
    await asyncio.gather(*(coordinator.hook(name) for name in hooks))
    await coordinator.wait_finished()
    assert (announce.runs, retire.runs) == (runs, runs)
    if not runs:
        records = coordinator.status().records
        reasons = {r.label: r.detail.get("reason") for r in records if r.outcome is Outcome.SKIPPED}
        unconfirmed = "no confirmed deletion, and not every container's hook came"
        assert reasons["announce"] == reasons["retire"] == unconfirmed
    await coordinator.close()
