"""The journal: a phase never raises, never outlives its deadline, is recorded by its label."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from sidecar.model.deadline import plan_budget
from sidecar.model.report import Outcome, Phase, PhaseRecord, Release, Result
from sidecar.shutdown.journal import OVERRUN_SECONDS, Journal
from tests.shutdown.doubles import forever

pytestmark = pytest.mark.looptime


class Told:
    """A ShutdownListener that keeps what it was told."""

    def __init__(self) -> None:
        self.records: list[PhaseRecord] = []
        self.summaries: list[dict[str, Any]] = []

    def phase_finished(self, record: PhaseRecord) -> None:
        self.records.append(record)

    def container_released(self, release: Release) -> None:
        raise AssertionError(release)

    def shutdown_finished(self, summary: dict[str, Any]) -> None:
        self.summaries.append(summary)


async def _ok() -> Result:
    return Result(Outcome.OK, {"seen": 3})


async def _broken() -> Result:
    raise KeyError("metadata")


async def test_a_finished_phase_is_recorded_and_told_with_its_detail() -> None:
    told = Told()
    journal = Journal(told)
    result = await journal.run(Phase.DRAIN, _ok(), asyncio.get_running_loop().time() + 5)
    assert result == Result(Outcome.OK, {"seen": 3})
    assert [(r.label, r.outcome, r.detail) for r in told.records] == [
        ("drain", Outcome.OK, {"seen": 3})
    ]
    assert journal.current is Phase.DRAIN


async def test_a_phase_that_ignores_its_deadline_is_cut_just_after_it() -> None:
    journal = Journal(None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 4
    result = await journal.run(Phase.UNROUTE, forever(), deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"reason": "phase overran its deadline"}
    assert loop.time() == pytest.approx(deadline + OVERRUN_SECONDS)


async def test_a_phase_that_raises_becomes_an_error_naming_the_exception() -> None:
    journal = Journal(None)
    result = await journal.run(Phase.RETIRE, _broken(), asyncio.get_running_loop().time() + 1)
    assert result == Result(Outcome.ERROR, {"error": "KeyError: 'metadata'"})


async def test_per_group_phases_are_labelled_with_their_group_in_the_summary() -> None:
    told = Told()
    journal = Journal(told)
    now = asyncio.get_running_loop().time()
    await journal.run(Phase.EXIT, _ok(), now + 1, group=0)
    await journal.run(Phase.EXIT, _ok(), now + 1)
    budget = plan_budget(
        started_at=now,
        grace_seconds=30,
        group_count=2,
        sigterm_reserve_seconds=5,
        answer_margin_seconds=1,
    )
    summary = journal.finish(budget, (Release("app", now + 1, "turn"),))
    assert list(summary["phases"]) == ["exit:0", "exit"]
    assert summary["released"] == {"app": {"at_seconds": 1.0, "reason": "turn"}}
    assert told.summaries == [summary]


async def test_log_lines_inside_a_phase_carry_the_phase_from_the_log_context() -> None:
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    structlog.contextvars.bind_contextvars(pod="web-1")
    try:

        async def logs_inside() -> Result:
            structlog.get_logger("probe").info("inside")
            return Result(Outcome.OK)

        await Journal(None).run(Phase.QUIESCE, logs_inside(), asyncio.get_running_loop().time() + 1)
        structlog.get_logger("probe").info("after")
    finally:
        structlog.contextvars.clear_contextvars()
    seen = {e["event"]: (e.get("pod"), e.get("phase")) for e in capture.entries}
    assert seen["inside"] == ("web-1", "quiesce")
    assert seen["phase_finished"] == ("web-1", "quiesce")
    assert seen["after"] == ("web-1", None)  # the phase is unbound once it ends
