"""The coordinator: hooks answered in plan order by their deadlines, whatever hangs; one run."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from sidecar.model.report import Outcome
from sidecar.shutdown.coordinator import Coordinator
from tests.shutdown.doubles import (
    HangingProcesses,
    HangingProxy,
    HangingRegistry,
    HangingSampler,
    NoProcesses,
    RecordingProxy,
    ScriptedTraffic,
    StuckApi,
    StuckTraffic,
    pod_settings,
)

pytestmark = pytest.mark.looptime


async def _hooks(coordinator: Coordinator, *names: str) -> dict[str, float]:
    """Call every hook at once, as the kubelet does; return when each was answered."""
    loop = asyncio.get_running_loop()
    answered: dict[str, float] = {}

    async def hook(name: str) -> None:
        coordinator.start()
        await coordinator.wait_released(name)
        answered[name] = loop.time()

    await asyncio.gather(*(hook(n) for n in names))
    return answered


async def test_hooks_are_answered_in_plan_order_before_the_deadline_when_all_is_stuck() -> None:
    coordinator = Coordinator(
        pod_settings(),
        traffic=StuckTraffic(),
        processes=HangingProcesses(),
        proxy=HangingProxy(),
        api=StuckApi(),
        announce=HangingRegistry(),
        retire=HangingRegistry(),
    )
    answered = await _hooks(coordinator, "envoy", "app")
    budget = coordinator.status().budget
    assert budget is not None
    assert answered["app"] == pytest.approx(budget.release_by[0])
    assert answered["envoy"] == pytest.approx(budget.release_by[1])
    assert answered["app"] < answered["envoy"] < budget.hard_deadline
    assert [(r.container, r.reason) for r in coordinator.status().releases] == [
        ("app", "deadline"),
        ("envoy", "deadline"),
    ]
    await asyncio.wait_for(
        coordinator.wait_finished(), budget.remaining(asyncio.get_running_loop().time())
    )
    summary = coordinator.status().summary
    assert summary is not None
    assert summary["outcome"] == "degraded"
    outcomes = {r.label: r.outcome for r in coordinator.status().records}
    assert outcomes["unroute"] is Outcome.TIMED_OUT
    assert outcomes["announce"] is Outcome.TIMED_OUT
    await coordinator.close()


async def test_a_sampler_that_never_answers_still_ends_before_the_deadline() -> None:
    coordinator = Coordinator(
        pod_settings(), traffic=HangingSampler(), processes=NoProcesses(), proxy=RecordingProxy()
    )
    answered = await _hooks(coordinator, "app", "envoy")
    budget = coordinator.status().budget
    assert budget is not None
    assert answered["app"] <= budget.release_by[0] + 0.001
    assert answered["envoy"] <= budget.release_by[1] + 0.001
    await coordinator.wait_finished()
    assert asyncio.get_running_loop().time() <= budget.hard_deadline
    await coordinator.close()


async def test_quiet_traffic_releases_the_app_on_its_turn_and_the_proxy_after_the_app_exits() -> (
    None
):
    traffic = ScriptedTraffic()
    proxy = RecordingProxy()
    coordinator = Coordinator(pod_settings(), traffic=traffic, processes=NoProcesses(), proxy=proxy)
    loop = asyncio.get_running_loop()
    start = loop.time()
    traffic.busy_until = start + 2.5  # a request in flight, then silence
    with capture_logs() as logs:
        coordinator.start("app")
        coordinator.start("envoy")  # the kubelet calls every hook; the proxy's is held too
        await coordinator.wait_released("app")
        app_at = loop.time() - start
        assert not coordinator.is_released("envoy")
        traffic.listening.discard(8080)  # the kubelet's SIGTERM: the app exits
        await coordinator.wait_released("envoy")
        await coordinator.wait_finished()
    # Unroute waits its fixed 2 s without the API. The request seen arriving in each 0.1 s
    # sample until 2.4 s teaches a window of ln(1000 * 10 * 30) / 10 per second = 1.26 s (the
    # random tail over a 30 s quiesce_max): the sample at 3.7 s is the first that far past it.
    assert app_at == pytest.approx(3.7)
    assert [(r.container, r.reason) for r in coordinator.status().releases] == [
        ("app", "turn"),
        ("envoy", "turn"),
    ]
    assert proxy.calls == ["drain_inbound", "quit"]
    finished = [e for e in logs if e["event"] == "shutdown_finished"]
    assert len(finished) == 1
    assert finished[0]["phases"]["unroute"]["outcome"] == "degraded"
    assert finished[0]["phases"]["unroute"]["reason"] == "API not available: waited a fixed delay"
    quiesce = finished[0]["phases"]["quiesce"]
    assert (quiesce["ended_by"], quiesce["window_seconds"]) == ("lull", 1.261)
    assert finished[0]["phases"]["drain"]["outcome"] == "ok"
    assert finished[0]["phases"]["exit"]["seen_by"] == "listening_sockets"
    await coordinator.close()


async def test_a_deadline_shorter_than_the_quiet_window_cuts_quiesce_but_releases_in_time() -> None:
    settings = pod_settings(budget={"grace_seconds": 3}, phases={"quiet_window_seconds": 10})
    coordinator = Coordinator(
        settings, traffic=ScriptedTraffic(), processes=NoProcesses(), proxy=RecordingProxy()
    )
    answered = await _hooks(coordinator, "app", "envoy")
    budget = coordinator.status().budget
    assert budget is not None
    assert answered["app"] <= budget.release_by[0] + 0.001
    assert answered["envoy"] <= budget.release_by[1] + 0.001 < budget.hard_deadline
    await coordinator.wait_finished()
    outcomes = {r.label: r.outcome for r in coordinator.status().records}
    assert outcomes["quiesce"] is Outcome.TIMED_OUT
    await coordinator.close()


async def test_native_sidecar_mode_takes_our_own_sigterm_as_the_apps_exit() -> None:
    settings = pod_settings(server={"allow_unauthenticated": True, "mode": "native"})
    traffic = ScriptedTraffic()
    coordinator = Coordinator(
        settings, traffic=traffic, processes=NoProcesses(), proxy=RecordingProxy()
    )
    coordinator.start("app")
    coordinator.start("envoy")
    await coordinator.wait_released("app")
    # The app's port still listens (a child kept it), but the kubelet says every app exited.
    coordinator.notice_own_sigterm()
    await coordinator.wait_released("envoy")
    await coordinator.wait_finished()
    exit_record = next(r for r in coordinator.status().records if r.phase == "exit")
    assert exit_record.detail["seen_by"] == "own_sigterm"
    await coordinator.close()


async def test_starting_twice_runs_one_shutdown() -> None:
    coordinator = Coordinator(pod_settings(), traffic=ScriptedTraffic(), processes=NoProcesses())
    coordinator.start()
    budget = coordinator.status().budget
    coordinator.start()
    assert coordinator.status().budget is budget
    await coordinator.close()


async def test_the_pods_own_deletion_grace_replaces_the_configured_one() -> None:
    coordinator = Coordinator(
        pod_settings(budget={"grace_seconds": 30}),
        traffic=StuckTraffic(),
        processes=HangingProcesses(),
        proxy=HangingProxy(),
        api=StuckApi(grace_seconds=10),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    answered = await _hooks(coordinator, "app", "envoy")
    budget = coordinator.status().budget
    assert budget is not None
    assert budget.grace_seconds == 10
    # deletionTimestamp has whole seconds, so the deadline may come up to a second early.
    assert 9 <= budget.hard_deadline - started <= 10
    assert answered["envoy"] < budget.hard_deadline
    assert answered["app"] == pytest.approx(budget.release_by[0])
    await coordinator.close()
