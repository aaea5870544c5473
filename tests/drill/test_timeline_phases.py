"""The agent's phases read back from its JSON log lines, as the drill's picture draws them."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.drill.phases import AgentPhases, agent_phases


def at(seconds: float) -> str:
    """A structlog ISO timestamp `seconds` after 12:00:00 UTC."""
    whole, part = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"2026-12-01T12:00:{whole:02d}.{part:06d}Z"


def started(phase: str, t: float, group: int | None = None) -> dict[str, Any]:
    return {"event": "phase_started", "phase": phase, "group": group, "timestamp": at(t)}


def finished(
    phase: str, t: float, duration: float, outcome: str = "ok", **detail: Any
) -> dict[str, Any]:
    return {
        "event": "phase_finished",
        "phase": phase,
        "outcome": outcome,
        "duration_seconds": duration,
        "timestamp": at(t),
        **detail,
    }


LOG: list[dict[str, Any]] = [
    {"event": "sigterm_received", "timestamp": at(9.9)},
    {"event": "prestop_received", "container": "app", "timestamp": at(10.0)},
    {"event": "prestop_received", "container": "proxy", "timestamp": at(10.001)},
    finished("confirm", 10.5, 0.5, by="api"),  # confirm has no phase_started line
    started("unroute", 10.5),
    started("announce", 10.5),
    finished("announce", 10.5, 0.0, "skipped", reason="no registry configured"),
    finished("unroute", 11.0, 0.5, verdict="out_of_rotation"),
    started("quiesce", 11.0),
    finished("quiesce", 13.0, 2.0, ended_by="peers_closed", samples=20),
    started("drain", 13.0),
    finished("drain", 13.25, 0.25, in_flight=0),
    {"event": "container_released", "container": "app", "reason": "turn", "timestamp": at(13.25)},
    started("exit", 13.25, group=0),
    finished("exit:0", 13.35, 0.1, seen_by="listening_sockets"),
    {"event": "agent_exiting", "reason": "finished", "timestamp": at(13.5)},
]


def test_phases_are_read_in_order_from_the_first_hook_with_what_ended_each() -> None:
    phases = agent_phases(LOG)
    assert [s.label for s in phases.spans] == [
        "confirm",
        "announce",
        "unroute",
        "quiesce",
        "drain",
        "exit:0",
    ]
    by_label = {s.label: s for s in phases.spans}
    confirm = by_label["confirm"]
    assert (confirm.started, confirm.ended) == pytest.approx((0.0, 0.5))
    assert (confirm.outcome, confirm.signal) == ("ok", "api")
    quiesce = by_label["quiesce"]
    assert (quiesce.started, quiesce.ended) == pytest.approx((1.0, 3.0))
    assert quiesce.signal == "peers_closed"
    assert by_label["unroute"].signal == "out_of_rotation"
    assert by_label["exit:0"].signal == "listening_sockets"
    assert by_label["exit:0"].started == pytest.approx(3.25)  # its phase_started, grouped
    # No signal named: the picture shows the outcome instead.
    assert (by_label["drain"].signal, by_label["drain"].outcome) == (None, "ok")
    assert by_label["announce"].outcome == "skipped"
    ((container, released),) = phases.releases
    assert container == "app"
    assert released == pytest.approx(3.25)


def test_quiesce_without_ended_by_has_no_signal_and_keeps_its_outcome() -> None:
    lines = [
        {"event": "prestop_received", "timestamp": at(0.0)},
        started("quiesce", 1.0),
        finished("quiesce", 4.0, 3.0, "timed_out", samples=30),
    ]
    (span,) = agent_phases(lines).spans
    assert (span.label, span.signal, span.outcome) == ("quiesce", None, "timed_out")
    assert span.duration == pytest.approx(3.0)


def test_without_a_hook_line_the_first_phase_start_is_the_origin() -> None:
    lines = [started("quiesce", 5.0), finished("quiesce", 6.0, 1.0, ended_by="lull")]
    (span,) = agent_phases(lines).spans
    assert (span.started, span.ended) == pytest.approx((0.0, 1.0))


def test_without_a_start_line_the_start_is_the_end_less_the_duration() -> None:
    lines = [{"event": "prestop_received", "timestamp": at(0.0)}, finished("drain", 2.0, 0.75)]
    (span,) = agent_phases(lines).spans
    assert span.started == pytest.approx(1.25)


def test_a_log_without_phase_records_gives_nothing() -> None:
    assert agent_phases([]) == AgentPhases()
    assert agent_phases([{"event": "prestop_received", "timestamp": at(0.0)}]) == AgentPhases()
    assert agent_phases([{"event": "something_else"}, {"no_event": 1}]) == AgentPhases()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"event": "phase_finished", "phase": "drain", "duration_seconds": 1.0}, "no timestamp"),
        (
            {**finished("drain", 1.0, 1.0), "timestamp": "yesterday"},
            "not ISO 8601: 'yesterday'",
        ),
        ({**finished("drain", 1.0, 1.0), "duration_seconds": "long"}, "no duration in seconds"),
        ({**finished("drain", 1.0, 1.0), "duration_seconds": -1}, "no duration in seconds"),
        ({**finished("drain", 1.0, 1.0), "phase": None}, "names no phase"),
    ],
)
def test_a_broken_phase_record_is_named_in_the_error(line: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        agent_phases([line])
