"""The agent's phases under the coordinated scenario's bars, each with what ended it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.drill.phases import agent_phases
from sidecar.drill.svg import LANE, LEFT, ROW, WIDTH, element, label_text
from sidecar.drill.timeline import fit_left, label_rows, text_width

if TYPE_CHECKING:
    from sidecar.drill.phases import PhaseSpan
    from sidecar.drill.scenarios import ScenarioResult
    from sidecar.drill.svg import Axis

_PHASE_COLOURS = {
    "confirm": "#bab0ac",
    "announce": "#d4a6c8",
    "unroute": "#9c755f",
    "quiesce": "#edc948",
    "drain": "#76b7b2",
    "exit": "#b07aa1",
    "retire": "#ff9da7",
    "release_proxy": "#59a14f",
}


def _seconds_text(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.1f} s"


def _phase_text(span: PhaseSpan) -> str:
    """`quiesce 2.3 s, ended by peers_closed`, or `drain 0 ms: ok` when the log names no signal."""
    head = f"{span.label} {_seconds_text(span.duration)}"
    if span.signal is None:
        return f"{head}: {span.outcome}"
    tail = "" if span.outcome == "ok" else f" ({span.outcome})"
    return f"{head}, ended by {span.signal}{tail}"


def draw(out: list[str], axis: Axis, result: ScenarioResult, top: float) -> float:
    """The agent's phases under a panel's bars, on its time axis; returns the strip's bottom."""
    if not result.agent_log:
        return top
    hooks = [k.hook_started for k in result.killed.values() if k.hook_started is not None]
    try:
        phases = agent_phases(result.agent_log)
    except ValueError as e:
        return note(out, top, f"agent phases not drawn: {e}")
    if not phases.spans:
        return note(out, top, "agent phases not drawn: its log has no phase records")
    if not hooks:
        return note(out, top, "agent phases not drawn: no preStop hook time to align them")
    shift = min(hooks) - result.t0
    drawn = [s for s in phases.spans if s.outcome != "skipped"]
    skipped = [s.label for s in phases.spans if s.outcome == "skipped"]
    heading = "agent phases (from its log)"
    if skipped:
        heading += f"; skipped: {', '.join(skipped)}"
    out.append(element("text", heading, x=LEFT, y=top + 10, fill="#555"))
    x = axis.x
    # Lanes by time, so phases that follow each other share one; pixels may round them over.
    lanes = label_rows([(s.started, s.ended) for s in drawn], gap=-0.002)
    lane_top = top + 16
    for span, lane in zip(drawn, lanes, strict=True):
        left = x(span.started + shift)
        right = max(x(span.ended + shift), left + 2)
        flagged = span.outcome not in ("ok", "skipped")
        out.append(
            element(
                "rect",
                x=f"{left:.1f}",
                y=f"{lane_top + lane * (LANE + 3):.1f}",
                width=f"{right - left:.1f}",
                height=LANE,
                fill=_PHASE_COLOURS.get(span.label.split(":")[0], "#999"),
                stroke="#d62728" if flagged else "none",
                stroke_width=1.5,
            )
        )
    label_top = lane_top + (max(lanes) + 1) * (LANE + 3) + 2
    labels = [(_phase_text(s), x(s.started + shift), s.label) for s in drawn]
    labels += [(f"released {name}", x(at + shift), "") for name, at in phases.releases]
    labels = [(t, fit_left(lx, 11 + text_width(t), WIDTH), label) for t, lx, label in labels]
    rows = label_rows([(lx, lx + 11 + text_width(t)) for t, lx, _ in labels])
    for (text, lx, label), row in zip(labels, rows, strict=True):
        y = label_top + row * ROW + 10
        colour = _PHASE_COLOURS.get(label.split(":")[0], "#333") if label else "#333"
        if label:
            out.append(
                element("rect", x=f"{lx:.1f}", y=f"{y - 8:.1f}", width=8, height=8, fill=colour)
            )
        else:
            out.append(element("path", d=f"M{lx:.1f} {y - 8:.1f} l4 8 l4 -8 z", fill="#333"))
        out.append(label_text(text, lx + 11, y))
    for _, at in phases.releases:
        px = f"{x(at + shift):.1f}"
        out.append(
            element(
                "line",
                x1=px,
                y1=f"{lane_top - 2:.1f}",
                x2=px,
                y2=f"{label_top:.1f}",
                stroke="#333",
            )
        )
    return label_top + (max(rows, default=-1) + 1) * ROW + 4


def note(out: list[str], top: float, text: str) -> float:
    """A red line saying why the strip is not drawn; returns its bottom."""
    out.append(element("text", text, x=LEFT, y=top + 10, fill="#d62728"))
    return top + 14
