"""Registry steps as pure decisions: what to do next, and how it ended, from what was seen.

Retire is deregister, read back, force-remove if the entry may still be there, read back again
(docs/registries.md). The phase that runs it (sidecar.shutdown.registries) records each step's
settled answer in a `Retirement` snapshot and asks `next_step` what to do; `decide` names the
registry's outcome from whatever was seen, also when time ran out half-way. An unknown read (an
error, a refusal, a status that proves nothing) is never taken for absence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from sidecar.model.report import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable


class Presence(StrEnum):
    """What a read-back says of our entry."""

    PRESENT = "present"
    ABSENT = "absent"
    #: The answer proves nothing either way (refused, filtered, unexpected, failed).
    UNKNOWN = "unknown"


class Answer(StrEnum):
    """How a write step (mark down, deregister, force-remove) ended."""

    OK = "ok"
    #: The registry says there is no such entry (deregister only).
    GONE = "gone"
    FAILED = "failed"
    #: The back end has no such step.
    UNSUPPORTED = "unsupported"


class Step(StrEnum):
    """The steps of retire, in order; then announce's mark-down and a standalone action."""

    DEREGISTER = "deregister"
    READ = "read"
    FORCE = "force"
    READ_AGAIN = "read_again"
    DONE = "done"
    #: Announce's one step (never returned by `next_step`).
    MARK_DOWN = "mark_down"
    #: An offline call or a config cleanup (never returned by `next_step`).
    ACTION = "action"


class RegistryOutcome(StrEnum):
    """How retire ended for one registry (docs/registries.md, "The seam")."""

    REMOVED = "removed"
    ALREADY_ABSENT = "already_absent"
    FORCED = "forced"
    STILL_PRESENT = "still_present"
    ERROR = "error"


@dataclass(frozen=True)
class Retirement:
    """The settled answer of each retire step so far; None: not reached (yet)."""

    deregister: Answer | None = None
    read: Presence | None = None
    force: Answer | None = None
    read_again: Presence | None = None
    #: The deadline came before the sequence was done.
    timed_out: bool = False


def next_step(seen: Retirement, *, can_force: bool) -> Step:
    """The step to take next; DONE once the entry is known absent or nothing is left to try."""
    if seen.timed_out:
        return Step.DONE
    if seen.deregister is None:
        return Step.DEREGISTER
    if seen.read is None:
        return Step.READ
    # Present, or unknown (never taken for absence): force-remove if the back end can.
    if seen.read is Presence.ABSENT or not can_force:
        return Step.DONE
    if seen.force is None:
        return Step.FORCE
    return Step.READ_AGAIN if seen.read_again is None else Step.DONE


def record(
    seen: Retirement, step: Step, answer: Answer | Presence, *, timed_out: bool = False
) -> Retirement:
    """`seen` with a retire step's settled answer (a Presence for reads, else an Answer)."""
    is_read = step in (Step.READ, Step.READ_AGAIN)
    if step not in _RETIRE_STEPS or is_read != isinstance(answer, Presence):
        msg = f"{step} cannot be answered with {answer!r}"
        raise ValueError(msg)
    changes: dict[str, Answer | Presence | bool] = {step.value: answer, "timed_out": timed_out}
    return replace(seen, **changes)  # type: ignore[arg-type] # keys checked above


_RETIRE_STEPS = (Step.DEREGISTER, Step.READ, Step.FORCE, Step.READ_AGAIN)


def settled(step: Step, answer: Answer | Presence) -> bool:
    """Whether `answer` ends `step`; otherwise it is retried while time and attempts last.

    A failed write and an unknown read are retried; so is a read after a force-removal that still
    sees the entry, since the admin API's removal may take a moment to show.
    """
    if answer in (Answer.FAILED, Presence.UNKNOWN):
        return False
    return not (step is Step.READ_AGAIN and answer is Presence.PRESENT)


def decide(seen: Retirement) -> RegistryOutcome:
    """The outcome of retire from the last read made, and the steps that led to it."""
    last = seen.read_again if seen.read_again is not None else seen.read
    if last is None or last is Presence.UNKNOWN:
        return RegistryOutcome.ERROR
    if last is Presence.PRESENT:
        return RegistryOutcome.STILL_PRESENT
    if seen.read_again is not None and seen.force is Answer.OK:
        return RegistryOutcome.FORCED
    if seen.deregister is Answer.GONE and seen.force is None:
        return RegistryOutcome.ALREADY_ABSENT
    return RegistryOutcome.REMOVED


def retire_outcome(outcome: RegistryOutcome, *, timed_out: bool) -> Outcome:
    """The phase outcome one registry's retirement stands for."""
    if outcome in (
        RegistryOutcome.REMOVED,
        RegistryOutcome.ALREADY_ABSENT,
        RegistryOutcome.FORCED,
    ):
        return Outcome.OK
    return Outcome.TIMED_OUT if timed_out else Outcome.ERROR


def announce_outcome(answer: Answer, *, timed_out: bool) -> Outcome:
    """The phase outcome one mark-down (or offline call) stands for."""
    if answer is Answer.UNSUPPORTED:
        return Outcome.SKIPPED
    if answer in (Answer.OK, Answer.GONE):
        return Outcome.OK
    return Outcome.TIMED_OUT if timed_out else Outcome.ERROR


_SEVERITY = {
    Outcome.SKIPPED: 0,
    Outcome.OK: 1,
    Outcome.DEGRADED: 2,
    Outcome.TIMED_OUT: 3,
    Outcome.ERROR: 4,
}


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The phase outcome of several registries: the worst one; SKIPPED when none did anything."""
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.SKIPPED)
