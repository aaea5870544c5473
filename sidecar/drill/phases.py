"""The agent's phases as its JSON log tells them, for the drill's picture.

The journal (sidecar/shutdown/journal.py) logs `phase_started` when a phase begins (not for
`confirm`, which is recorded after the fact) and `phase_finished` with the phase's label,
outcome, duration and the detail of its Result; `prestop_received` marks each hook the agent
got, and `container_released` each hook it answered. Times here are seconds from the first
hook the agent received: that moment is the one the drill also knows on its own clock (the
kubelet's first hook call), so the picture can put the phases on the drill's time axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The detail field that names what ended a phase, besides `ended_by` (which any phase may
#: carry, and which wins): the fact that let the phase finish.
_SIGNAL_FIELDS = {"confirm": "by", "unroute": "verdict", "exit": "seen_by"}


@dataclass(frozen=True)
class PhaseSpan:
    """One finished phase, in seconds from the first hook."""

    label: str
    started: float
    ended: float
    outcome: str
    #: What ended it (`peers_closed`, `out_of_rotation`, …); None when the log does not say.
    signal: str | None = None

    @property
    def duration(self) -> float:
        """Seconds the phase took."""
        return self.ended - self.started


@dataclass(frozen=True)
class AgentPhases:
    """What the agent's log says about its shutdown, in seconds from the first hook."""

    spans: list[PhaseSpan] = field(default_factory=list)
    #: (container, seconds) of each hook the agent answered, in order.
    releases: list[tuple[str, float]] = field(default_factory=list)


def _when(line: Mapping[str, Any]) -> float:
    stamp = line.get("timestamp")
    if not isinstance(stamp, str):
        msg = f"agent log line {line.get('event')!r} has no timestamp (got {stamp!r})"
        raise ValueError(msg)  # noqa: TRY004 - a bad value, whatever its type
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        msg = (
            f"agent log line {line.get('event')!r} has a timestamp that is not ISO 8601: {stamp!r}"
        )
        raise ValueError(msg) from None


def _label(line: Mapping[str, Any]) -> str:
    phase = line.get("phase")
    if not isinstance(phase, str) or not phase:
        msg = f"agent log line {line.get('event')!r} names no phase (got {phase!r})"
        raise ValueError(msg)
    group = line.get("group")
    # phase_started carries the group apart; phase_finished has it in the label already.
    return phase if group is None or ":" in phase else f"{phase}:{group}"


def signal_of(label: str, detail: Mapping[str, Any]) -> str | None:
    """What ended a phase: its `ended_by`, else the fact its kind of phase ends on, else None."""
    for key in ("ended_by", _SIGNAL_FIELDS.get(label.split(":", maxsplit=1)[0])):
        value = detail.get(key) if key else None
        if isinstance(value, str) and value:
            return value
    return None


def agent_phases(lines: Iterable[Mapping[str, Any]]) -> AgentPhases:
    """The phases and releases in the agent's log lines, in seconds from the first hook.

    Lines that are not phase, hook or release records are ignored. Without a
    `prestop_received` line, the first phase's start stands for the first hook.
    Raises ValueError naming the line when a record lacks its time, phase or duration.
    """
    first_hook: float | None = None
    starts: dict[str, float] = {}
    finished: list[tuple[str, float, float, str, str | None]] = []
    released: list[tuple[str, float]] = []
    for line in lines:
        event = line.get("event")
        if event == "prestop_received":
            at = _when(line)
            first_hook = at if first_hook is None else min(first_hook, at)
        elif event == "phase_started":
            starts.setdefault(_label(line), _when(line))
        elif event == "phase_finished":
            label, ended = _label(line), _when(line)
            duration = line.get("duration_seconds")
            if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
                msg = f"phase_finished for {label!r} has no duration in seconds (got {duration!r})"
                raise ValueError(msg)
            outcome = str(line.get("outcome", "unknown"))
            # The start line is exact; duration_seconds is rounded to the millisecond.
            started = min(starts.pop(label, ended - duration), ended)
            finished.append((label, started, ended, outcome, signal_of(label, line)))
        elif event == "container_released":
            released.append((str(line.get("container", "?")), _when(line)))
    if not finished and not released:
        return AgentPhases()
    origin = first_hook
    if origin is None:
        origin = min([s for _, s, *_ in finished] + [at for _, at in released])
    return AgentPhases(
        spans=[
            PhaseSpan(label, started - origin, ended - origin, outcome, signal)
            for label, started, ended, outcome, signal in finished
        ],
        releases=[(name, at - origin) for name, at in released],
    )
