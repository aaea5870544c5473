"""/metrics: hook counts, budget and connections read from the flight's status; phases by label."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.agent.metrics import Metrics
from sidecar.model.deadline import plan_budget
from sidecar.model.flight import FlightState, FlightStatus, HookCounts
from sidecar.model.report import Outcome, Phase, PhaseRecord, Release

pytestmark = pytest.mark.looptime


def _status(**changes: object) -> FlightStatus:
    fields: dict[str, object] = {
        "state": FlightState.IDLE,
        "phase": None,
        "kind": None,
        "budget": None,
        "records": (),
        "releases": (),
        "hooks": HookCounts(),
        "traffic": {},
        "summary": None,
    }
    fields.update(changes)
    return FlightStatus(**fields)  # type: ignore[arg-type]


def _rendered(metrics: Metrics) -> set[str]:
    return {line for line in metrics.render().decode().splitlines() if not line.startswith("#")}


async def test_hook_counts_come_from_the_status_with_the_documented_results() -> None:
    metrics = Metrics()
    hooks = HookCounts({"app": 2}, {"token": 3, "unknown_container": 1}, held=1)
    metrics.watch(lambda: _status(hooks=hooks), 30.0)
    lines = _rendered(metrics)
    assert 'shutdown_coordinator_hooks_total{container="app",result="accepted"} 2.0' in lines
    assert 'shutdown_coordinator_hooks_total{container="",result="rejected_token"} 3.0' in lines
    assert 'shutdown_coordinator_hooks_total{container="",result="unknown_container"} 1.0' in lines


async def test_budget_left_is_the_configured_grace_while_idle_then_the_flights() -> None:
    metrics = Metrics()
    current = [_status()]
    metrics.watch(lambda: current[0], 30.0)
    assert "shutdown_coordinator_budget_remaining_seconds 30.0" in _rendered(metrics)
    loop = asyncio.get_running_loop()
    budget = plan_budget(
        started_at=loop.time(),
        grace_seconds=12,
        group_count=1,
        sigterm_reserve_seconds=5,
        answer_margin_seconds=1,
    )
    current[0] = _status(state=FlightState.RUNNING, budget=budget)
    await asyncio.sleep(5)  # fake time: five seconds of the flight's budget go by
    assert "shutdown_coordinator_budget_remaining_seconds 7.0" in _rendered(metrics)


async def test_connections_show_each_kind_and_zero_when_not_sampled() -> None:
    metrics = Metrics()
    metrics.watch(lambda: _status(traffic={"in_flight": 4, "idle": 7, "samples": 9}), 30.0)
    lines = _rendered(metrics)
    assert 'shutdown_coordinator_inbound_connections{kind="in_flight"} 4.0' in lines
    assert 'shutdown_coordinator_inbound_connections{kind="idle"} 7.0' in lines
    assert 'shutdown_coordinator_inbound_connections{kind="close_wait"} 0.0' in lines


async def test_phases_and_releases_are_recorded_under_their_labels() -> None:
    metrics = Metrics()
    metrics.phase_finished(PhaseRecord(Phase.EXIT, 10.0, 11.5, Outcome.TIMED_OUT, {}, 0))
    metrics.container_released(Release("app", 12.0, "turn"))
    metrics.shutdown_finished({})
    lines = _rendered(metrics)
    duration = 'shutdown_coordinator_phase_duration_seconds{outcome="timed_out",phase="exit:0"}'
    assert f"{duration} 1.5" in lines
    assert (
        'shutdown_coordinator_phase_outcomes_total{outcome="timed_out",phase="exit:0"} 1.0' in lines
    )
    assert (
        'shutdown_coordinator_container_released_seconds{container="app",reason="turn"} 2.0'
        in lines
    )
    assert "shutdown_coordinator_shutdown_finished 1.0" in lines


async def test_registry_outcomes_are_counted_by_phase_registry_and_outcome() -> None:
    metrics = Metrics()
    entries = {"eureka": {"outcome": "removed", "attempts": 2}}
    metrics.phase_finished(
        PhaseRecord(Phase.RETIRE, 1.0, 2.0, Outcome.OK, {"registries": entries, "actions": {}})
    )
    lines = _rendered(metrics)
    labels = 'outcome="removed",phase="retire",registry="eureka"'
    assert f"shutdown_coordinator_registry_outcomes_total{{{labels}}} 1.0" in lines
