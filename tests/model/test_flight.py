"""The flight status: what /status calls the phase in each state of the flight."""

from __future__ import annotations

import pytest

from sidecar.model.flight import FlightState, FlightStatus, HookCounts
from sidecar.model.report import Phase


def _status(state: FlightState, phase: Phase | None) -> FlightStatus:
    return FlightStatus(
        state=state,
        phase=phase,
        kind=None,
        budget=None,
        records=(),
        releases=(),
        hooks=HookCounts(),
        traffic={},
        summary=None,
    )


@pytest.mark.parametrize(
    ("state", "phase", "stage", "started"),
    [
        (FlightState.IDLE, None, "idle", False),
        (FlightState.RUNNING, None, "idle", True),  # the first hook came; confirm not begun
        (FlightState.RUNNING, Phase.QUIESCE, "quiesce", True),
        (FlightState.FINISHED, Phase.RELEASE_PROXY, "finished", True),
    ],
)
def test_the_stage_is_the_running_phase_else_idle_or_finished(
    state: FlightState, phase: Phase | None, stage: str, started: bool
) -> None:
    status = _status(state, phase)
    assert status.stage == stage
    assert status.started is started
