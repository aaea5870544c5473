"""A flight seen from outside: one immutable snapshot for /status, metrics and the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.model.deadline import Budget
    from sidecar.model.report import Phase, PhaseRecord, Release

#: What a flight turned out to be, once confirm has said.
FlightKind = Literal["deletion", "restart"]


class FlightState(StrEnum):
    """Where the one shutdown of this pod stands."""

    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True)
class HookCounts:
    """The hooks the server saw, over the agent's whole life."""

    received: Mapping[str, int] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)
    #: Hooks waiting for their answer right now.
    held: int = 0


@dataclass(frozen=True)
class FlightStatus:
    """Everything a reader may know of the flight, taken at one instant."""

    state: FlightState
    #: The phase that started last, while the flight runs.
    phase: Phase | None
    kind: FlightKind | None
    budget: Budget | None
    records: tuple[PhaseRecord, ...]
    releases: tuple[Release, ...]
    hooks: HookCounts
    #: The latest traffic figures (samples, established, in_flight, idle, close_wait).
    traffic: Mapping[str, object]
    #: The canonical `shutdown_finished` fields, once finished.
    summary: Mapping[str, Any] | None

    @property
    def started(self) -> bool:
        """Whether a flight has begun."""
        return self.state is not FlightState.IDLE

    @property
    def stage(self) -> str:
        """What /status calls `phase`: the running phase, else idle or finished."""
        if self.state is FlightState.RUNNING and self.phase is not None:
            return str(self.phase)
        return "idle" if self.state is not FlightState.FINISHED else "finished"
