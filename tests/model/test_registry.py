"""Pins retire's pure decisions: the next step from a snapshot, when an answer settles a step,
the outcome named from what was seen (an unknown read is never absence), and the phase outcome."""

from __future__ import annotations

import pytest

from sidecar.model.registry import (
    Answer,
    Presence,
    RegistryOutcome,
    Retirement,
    Step,
    announce_outcome,
    decide,
    next_step,
    record,
    retire_outcome,
    settled,
    worst,
)
from sidecar.model.report import Outcome

OK, GONE, FAILED = Answer.OK, Answer.GONE, Answer.FAILED
PRESENT, ABSENT, UNKNOWN = Presence.PRESENT, Presence.ABSENT, Presence.UNKNOWN


@pytest.mark.parametrize(
    ("seen", "can_force", "step"),
    [
        (Retirement(), True, Step.DEREGISTER),
        (Retirement(deregister=OK), True, Step.READ),
        (Retirement(deregister=FAILED), True, Step.READ),
        (Retirement(deregister=OK, read=ABSENT), True, Step.DONE),
        (Retirement(deregister=OK, read=PRESENT), True, Step.FORCE),
        (Retirement(deregister=OK, read=PRESENT), False, Step.DONE),
        (Retirement(deregister=GONE, read=UNKNOWN), True, Step.FORCE),
        (Retirement(deregister=OK, read=PRESENT, force=OK), True, Step.READ_AGAIN),
        (Retirement(deregister=OK, read=PRESENT, force=FAILED), True, Step.READ_AGAIN),
        (Retirement(deregister=OK, read=PRESENT, force=OK, read_again=PRESENT), True, Step.DONE),
        (Retirement(deregister=FAILED, timed_out=True), True, Step.DONE),
        (Retirement(timed_out=True), True, Step.DONE),
    ],
)
def test_the_next_step_follows_from_what_was_seen(
    seen: Retirement, can_force: bool, step: Step
) -> None:
    assert next_step(seen, can_force=can_force) is step


@pytest.mark.parametrize(
    ("seen", "outcome"),
    [
        (Retirement(deregister=OK, read=ABSENT), RegistryOutcome.REMOVED),
        (Retirement(deregister=FAILED, read=ABSENT), RegistryOutcome.REMOVED),
        (Retirement(deregister=GONE, read=ABSENT), RegistryOutcome.ALREADY_ABSENT),
        (
            Retirement(deregister=OK, read=PRESENT, force=OK, read_again=ABSENT),
            RegistryOutcome.FORCED,
        ),
        (
            Retirement(deregister=GONE, read=UNKNOWN, force=OK, read_again=ABSENT),
            RegistryOutcome.FORCED,
        ),
        (
            Retirement(deregister=OK, read=PRESENT, force=FAILED, read_again=ABSENT),
            RegistryOutcome.REMOVED,
        ),
        (
            Retirement(deregister=OK, read=PRESENT, force=FAILED, read_again=PRESENT),
            RegistryOutcome.STILL_PRESENT,
        ),
        (Retirement(deregister=OK, read=PRESENT), RegistryOutcome.STILL_PRESENT),
        # An unknown read is never absence, even after the registry said "no such entry".
        (Retirement(deregister=GONE, read=UNKNOWN), RegistryOutcome.ERROR),
        (
            Retirement(deregister=OK, read=PRESENT, force=OK, read_again=UNKNOWN),
            RegistryOutcome.ERROR,
        ),
        (Retirement(deregister=OK), RegistryOutcome.ERROR),
        (Retirement(), RegistryOutcome.ERROR),
        (Retirement(deregister=FAILED, timed_out=True), RegistryOutcome.ERROR),
    ],
)
def test_the_outcome_comes_from_the_last_read_and_the_steps_before_it(
    seen: Retirement, outcome: RegistryOutcome
) -> None:
    assert decide(seen) is outcome


@pytest.mark.parametrize(
    ("step", "answer", "done"),
    [
        (Step.DEREGISTER, OK, True),
        (Step.DEREGISTER, GONE, True),
        (Step.DEREGISTER, FAILED, False),
        (Step.READ, PRESENT, True),
        (Step.READ, ABSENT, True),
        (Step.READ, UNKNOWN, False),
        (Step.FORCE, FAILED, False),
        (Step.READ_AGAIN, ABSENT, True),
        # The admin API's removal may take a moment to show: read again.
        (Step.READ_AGAIN, PRESENT, False),
        (Step.MARK_DOWN, OK, True),
        (Step.ACTION, FAILED, False),
    ],
)
def test_failures_unknown_reads_and_a_lingering_entry_after_force_are_retried(
    step: Step, answer: Answer | Presence, done: bool
) -> None:
    assert settled(step, answer) is done


def test_recording_an_answer_fills_that_step_and_the_time_flag() -> None:
    seen = record(Retirement(deregister=OK), Step.READ, PRESENT, timed_out=True)
    assert seen == Retirement(deregister=OK, read=PRESENT, timed_out=True)


@pytest.mark.parametrize(
    ("step", "answer"),
    [(Step.READ, OK), (Step.DEREGISTER, ABSENT), (Step.MARK_DOWN, OK), (Step.DONE, OK)],
)
def test_recording_an_answer_of_the_wrong_kind_is_a_bug(
    step: Step, answer: Answer | Presence
) -> None:
    with pytest.raises(ValueError, match="cannot be answered"):
        record(Retirement(), step, answer)


@pytest.mark.parametrize(
    ("outcome", "timed_out", "phase"),
    [
        (RegistryOutcome.REMOVED, False, Outcome.OK),
        (RegistryOutcome.ALREADY_ABSENT, False, Outcome.OK),
        (RegistryOutcome.FORCED, False, Outcome.OK),
        (RegistryOutcome.STILL_PRESENT, False, Outcome.ERROR),
        (RegistryOutcome.ERROR, False, Outcome.ERROR),
        (RegistryOutcome.ERROR, True, Outcome.TIMED_OUT),
        (RegistryOutcome.STILL_PRESENT, True, Outcome.TIMED_OUT),
    ],
)
def test_each_registry_outcome_stands_for_a_phase_outcome(
    outcome: RegistryOutcome, timed_out: bool, phase: Outcome
) -> None:
    assert retire_outcome(outcome, timed_out=timed_out) is phase


@pytest.mark.parametrize(
    ("answer", "timed_out", "phase"),
    [
        (OK, False, Outcome.OK),
        (Answer.UNSUPPORTED, False, Outcome.SKIPPED),
        (FAILED, False, Outcome.ERROR),
        (FAILED, True, Outcome.TIMED_OUT),
    ],
)
def test_each_mark_down_answer_stands_for_a_phase_outcome(
    answer: Answer, timed_out: bool, phase: Outcome
) -> None:
    assert announce_outcome(answer, timed_out=timed_out) is phase


@pytest.mark.parametrize(
    ("outcomes", "phase"),
    [
        ([], Outcome.SKIPPED),
        ([Outcome.SKIPPED, Outcome.SKIPPED], Outcome.SKIPPED),
        ([Outcome.SKIPPED, Outcome.OK], Outcome.OK),
        ([Outcome.OK, Outcome.TIMED_OUT, Outcome.OK], Outcome.TIMED_OUT),
        ([Outcome.TIMED_OUT, Outcome.ERROR], Outcome.ERROR),
    ],
)
def test_a_phase_is_as_bad_as_its_worst_registry(outcomes: list[Outcome], phase: Outcome) -> None:
    assert worst(outcomes) is phase
