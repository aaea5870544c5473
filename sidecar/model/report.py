"""What a shutdown did: phase records, container releases, and the canonical summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a phase ended. A phase never raises; it returns one of these."""

    OK = "ok"
    #: Done, but with less evidence than wanted (no API, no timing, unobservable exit).
    DEGRADED = "degraded"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    ERROR = "error"


class Phase(StrEnum):
    """Every phase a shutdown records, in the order they start (README "How it works")."""

    CONFIRM = "confirm"
    ANNOUNCE = "announce"
    UNROUTE = "unroute"
    QUIESCE = "quiesce"
    DRAIN = "drain"
    #: Waiting for a released group's containers to exit (per group when there are several).
    EXIT = "exit"
    RETIRE = "retire"
    RELEASE_PROXY = "release_proxy"


@dataclass(frozen=True)
class Result:
    """What a phase returns: its outcome and the facts behind it."""

    outcome: Outcome
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseRecord:
    """One finished phase, on the loop clock."""

    phase: Phase
    started_at: float
    ended_at: float
    outcome: Outcome
    detail: dict[str, Any] = field(default_factory=dict)
    #: The release group a per-group phase waited on (an earlier group's exit), else None.
    group: int | None = None

    @property
    def duration(self) -> float:
        """Seconds the phase took."""
        return self.ended_at - self.started_at

    @property
    def label(self) -> str:
        """The phase's name in reports: `exit:0` for a per-group phase, else the phase."""
        return str(self.phase) if self.group is None else f"{self.phase}:{self.group}"


@dataclass(frozen=True)
class Release:
    """When a container's hook was answered, and why then."""

    container: str
    at: float
    #: "turn": its turn came; "deadline": its latest release time forced it.
    reason: str


def _seconds(value: float) -> float:
    return round(value, 3)


def summarise(
    *,
    started_at: float,
    ended_at: float,
    hard_deadline: float,
    phases: list[PhaseRecord],
    releases: list[Release],
) -> dict[str, Any]:
    """The fields of the canonical `shutdown_finished` line and of /status, times from the start."""
    clean = all(r.outcome in (Outcome.OK, Outcome.SKIPPED) for r in phases)
    return {
        "outcome": "ok" if clean else "degraded",
        "duration_seconds": _seconds(ended_at - started_at),
        "budget_left_seconds": _seconds(hard_deadline - ended_at),
        "phases": {
            r.label: {
                "outcome": str(r.outcome),
                "started_seconds": _seconds(r.started_at - started_at),
                "duration_seconds": _seconds(r.duration),
                **r.detail,
            }
            for r in phases
        },
        "released": {
            r.container: {"at_seconds": _seconds(r.at - started_at), "reason": r.reason}
            for r in releases
        },
    }


def registry_entries(record: PhaseRecord) -> list[tuple[str, dict[str, Any]]]:
    """Each registry's and action's entry in an announce or retire record, by name."""
    if record.phase not in (Phase.ANNOUNCE, Phase.RETIRE):
        return []
    return [
        (name, entry)
        for group in ("registries", "actions")
        for name, entry in sorted(record.detail.get(group, {}).items())
        if isinstance(entry, dict)
    ]
