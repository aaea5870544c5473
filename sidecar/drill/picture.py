"""The drill's timeline picture (SVG): bars by who answered, the moments, the agent's phases.

The geometry is pure (sidecar/drill/timeline.py) and the agent's phases come from its log
(sidecar/drill/phases.py); this module writes the SVG from them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from sidecar.drill.cluster import POD
from sidecar.drill.phases import agent_phases
from sidecar.drill.timeline import (
    Mark,
    buckets,
    fit_left,
    label_rows,
    merge_marks,
    text_width,
    ticks,
)

if TYPE_CHECKING:
    from sidecar.drill.params import DrillParams
    from sidecar.drill.phases import PhaseSpan
    from sidecar.drill.scenarios import ScenarioResult

#: Seconds per bar of the timeline.
_BUCKET_SECONDS = 0.25
_MARKS = (
    ("delete", "t0", "#222222"),
    ("endpoint not ready", "unready_at", "#7f7f7f"),
    ("data plane moved", "moved_at", "#9467bd"),
    ("app SIGTERM", "app_sigterm", "#8c564b"),
    ("pod gone", "pod_gone_at", "#2ca02c"),
    ("marked down", "marked_down_at", "#17becf"),
    ("key removed", "removed_at", "#bcbd22"),
    ("callers moved", "callers_left_at", "#e377c2"),
)


def _marks(result: ScenarioResult) -> list[Mark]:
    app = result.killed.get("app")
    moments = {
        "t0": result.t0,
        "unready_at": result.unready_at,
        "moved_at": result.moved_at,
        "app_sigterm": app.sigterm_at if app else None,
        "pod_gone_at": result.pod_gone_at,
        "marked_down_at": result.marked_down_at,
        "removed_at": result.removed_at,
        "callers_left_at": result.callers_left_at,
    }
    return [
        Mark(label, moment - result.t0, colour)
        for label, key, colour in _MARKS
        if (moment := moments[key]) is not None
    ]


def _element(tag: str, text: str = "", **attributes: object) -> str:
    attrs = " ".join(
        f'{k.replace("_", "-")}="{escape(str(v), {chr(34): "&quot;"})}"'
        for k, v in attributes.items()
    )
    return f"<{tag} {attrs}>{escape(text)}</{tag}>" if text else f"<{tag} {attrs}/>"


def _label_text(text: str, x: float, y: float, colour: str = "#333") -> str:
    """Text with a white halo, readable where a mark's line runs under it."""
    return _element(
        "text",
        text,
        x=f"{x:.1f}",
        y=f"{y:.1f}",
        fill=colour,
        stroke="white",
        stroke_width=3,
        paint_order="stroke",
    )


_WIDTH, _LEFT, _RIGHT, _TOP = 900, 70, 20, 64
_PLOT_WIDTH = _WIDTH - _LEFT - _RIGHT
_PLOT_HEIGHT, _ROW, _LANE = 110, 14, 12
#: Bars from the bottom: the deleted pod's answers, the other pods', the failures.
_SERVED = (
    ("deleted", "#f28e2b", "answered by the deleted pod"),
    ("others", "#4e79a7", "answered by the other pods"),
    ("failed", "#d62728", "failed (HTTP error or no answer)"),
)
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


class _Axis:
    """Maps seconds from the DELETE to x, the same for every panel."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def x(self, t: float) -> float:
        span = max(self.end - self.start, 1e-9)
        return _LEFT + (t - self.start) / span * _PLOT_WIDTH


def _seconds_text(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.1f} s"


def _phase_text(span: PhaseSpan) -> str:
    """`quiesce 2.3 s, ended by peers_closed`, or `drain 0 ms: ok` when the log names no signal."""
    head = f"{span.label} {_seconds_text(span.duration)}"
    if span.signal is None:
        return f"{head}: {span.outcome}"
    tail = "" if span.outcome == "ok" else f" ({span.outcome})"
    return f"{head}, ended by {span.signal}{tail}"


def _time_range(results: list[ScenarioResult]) -> tuple[float, float]:
    """From the first request to the end of the last one's bar, and every mark in between."""
    starts = [r.started - res.t0 for res in results for r in res.load.requests]
    marks = [m.seconds for res in results for m in _marks(res)]
    if not starts and not marks:
        return -1.0, 1.0
    start = min(starts + marks)
    end = max(marks, default=start)
    if starts:
        bars = math.floor((max(starts) - start) / _BUCKET_SECONDS) + 1
        end = max(end, start + bars * _BUCKET_SECONDS)
    return start, end


def _ceiling(results: list[ScenarioResult], start: float, rate: float) -> list[float]:
    """The rate axis' ticks: round numbers up to the tallest stacked bar (or the asked rate)."""
    tallest = max(
        (
            b.total / _BUCKET_SECONDS
            for res in results
            for b in buckets(res.load.requests, res.t0 + start, _BUCKET_SECONDS, POD)
        ),
        default=0.0,
    )
    return ticks(0.0, max(tallest, rate, 1.0), most=4)


class _Panel:
    """One scenario's drawing, laid out from a top edge down."""

    def __init__(
        self, result: ScenarioResult, axis: _Axis, levels: list[float], rate: float
    ) -> None:
        self.result, self.axis, self.levels, self.rate = result, axis, levels, rate
        self.out: list[str] = []
        #: The y of the rate axis' zero, known once the mark labels above the plot are laid out.
        self.base = 0.0

    def y(self, per_second: float) -> float:
        return self.base - per_second / self.levels[-1] * _PLOT_HEIGHT

    def draw(self, top: float) -> float:
        """Draw the panel at `top`; return where the next one starts."""
        result, axis = self.result, self.axis
        title = (
            result.recipe if result.routing == "service" else f"{result.recipe}@{result.routing}"
        )
        answered = sum(r.kind == "ok" for r in result.load.requests)
        summary = (
            f"{len(result.load.requests)} requests, {len(result.load.requests) - answered} failed"
        )
        self.out += [
            _element("text", title, x=_LEFT, y=top + 12, font_size=13, font_weight="bold"),
            _element("text", summary, x=_LEFT + 8.5 * len(title) + 12, y=top + 12, fill="#555"),
        ]
        groups = merge_marks(_marks(result), axis.x)
        texts = [g.text for g in groups]
        lefts = [
            fit_left(axis.x(g.seconds) + 3, text_width(t), _WIDTH)
            for g, t in zip(groups, texts, strict=True)
        ]
        rows = label_rows([(x, x + text_width(t)) for x, t in zip(lefts, texts, strict=True)])
        depth = max(rows, default=-1) + 1
        # The row nearest the plot is 0, so a label's line never runs through the rows above it.
        label_base = top + 20 + depth * _ROW
        self.base = label_base + 6 + _PLOT_HEIGHT
        plot_top = self.base - _PLOT_HEIGHT
        self._rate_axis(plot_top)
        self.out.append('<g class="bars">')
        self._bars()
        self.out.append("</g>")
        bottom = self._time_axis()
        self.out.append('<g class="agent-phases">')
        strip_end = self._strip(bottom + 8)
        self.out.append("</g>")
        line_end = strip_end if strip_end > bottom + 8 else self.base
        # Every line first, then every label on its white halo, above any line.
        for group, row in zip(groups, rows, strict=True):
            for mark in group.marks:
                px = f"{axis.x(mark.seconds):.1f}"
                self.out.append(
                    _element(
                        "line",
                        x1=px,
                        y1=f"{label_base - row * _ROW - 9:.1f}",
                        x2=px,
                        y2=f"{line_end:.1f}",
                        stroke=mark.colour,
                        stroke_width=1.5,
                        stroke_dasharray="4 3",
                    )
                )
        for group, x, text, row in zip(groups, lefts, texts, rows, strict=True):
            self.out.append(_label_text(text, x, label_base - row * _ROW, group.marks[0].colour))
        return max(bottom, strip_end) + 16

    def _rate_axis(self, plot_top: float) -> None:
        for level in self.levels:
            y = f"{self.y(level):.1f}"
            self.out.append(
                _element("line", x1=_LEFT, y1=y, x2=_LEFT + _PLOT_WIDTH, y2=y, stroke="#eee")
            )
            self.out.append(
                _element(
                    "text",
                    f"{level:g}",
                    x=_LEFT - 6,
                    y=f"{self.y(level) + 4:.1f}",
                    text_anchor="end",
                )
            )
        middle = (plot_top + self.base) / 2
        self.out.append(
            _element(
                "text",
                "requests/s",
                x=18,
                y=f"{middle:.1f}",
                text_anchor="middle",
                transform=f"rotate(-90 18 {middle:.1f})",
                fill="#555",
            )
        )
        asked = f"{self.y(self.rate):.1f}"
        self.out.append(
            _element(
                "line",
                x1=_LEFT,
                y1=asked,
                x2=_LEFT + _PLOT_WIDTH,
                y2=asked,
                stroke="#555",
                stroke_dasharray="1 3",
            )
        )
        self.out += [
            _element(
                "line", x1=_LEFT, y1=self.base, x2=_LEFT + _PLOT_WIDTH, y2=self.base, stroke="#888"
            ),
            _element("line", x1=_LEFT, y1=self.base, x2=_LEFT, y2=f"{plot_top:.1f}", stroke="#888"),
        ]

    def _bars(self) -> None:
        axis, result = self.axis, self.result
        origin = result.t0 + axis.start
        for bucket in buckets(result.load.requests, origin, _BUCKET_SECONDS, POD):
            t = axis.start + bucket.start
            left = axis.x(t)
            width = max(1.0, axis.x(t + _BUCKET_SECONDS) - left - 1)
            below = 0
            for key, colour, _ in _SERVED:
                count = getattr(bucket, key)
                if not count:
                    continue
                top = self.y((below + count) / _BUCKET_SECONDS)
                self.out.append(
                    _element(
                        "rect",
                        x=f"{left:.1f}",
                        y=f"{top:.1f}",
                        width=f"{width:.1f}",
                        height=f"{self.y(below / _BUCKET_SECONDS) - top:.1f}",
                        fill=colour,
                    )
                )
                below += count

    def _time_axis(self) -> float:
        axis = self.axis
        for second in ticks(axis.start, axis.end, most=12):
            if axis.start - 1e-9 <= second <= axis.end + 1e-9:
                x = f"{axis.x(second):.1f}"
                self.out.append(
                    _element("line", x1=x, y1=self.base, x2=x, y2=self.base + 3, stroke="#888")
                )
                self.out.append(
                    _element("text", f"{second:g}", x=x, y=self.base + 14, text_anchor="middle")
                )
        return self.base + 16

    def _strip(self, top: float) -> float:
        """The agent's phases under the bars, on the same time axis; returns its bottom."""
        result = self.result
        if not result.agent_log:
            return top
        hooks = [k.hook_started for k in result.killed.values() if k.hook_started is not None]
        try:
            phases = agent_phases(result.agent_log)
        except ValueError as e:
            return self._note(top, f"agent phases not drawn: {e}")
        if not phases.spans:
            return self._note(top, "agent phases not drawn: its log has no phase records")
        if not hooks:
            return self._note(top, "agent phases not drawn: no preStop hook time to align them")
        shift = min(hooks) - result.t0
        drawn = [s for s in phases.spans if s.outcome != "skipped"]
        skipped = [s.label for s in phases.spans if s.outcome == "skipped"]
        heading = "agent phases (from its log)"
        if skipped:
            heading += f"; skipped: {', '.join(skipped)}"
        self.out.append(_element("text", heading, x=_LEFT, y=top + 10, fill="#555"))
        x = self.axis.x
        # Lanes by time, so phases that follow each other share one; pixels may round them over.
        lanes = label_rows([(s.started, s.ended) for s in drawn], gap=-0.002)
        lane_top = top + 16
        for span, lane in zip(drawn, lanes, strict=True):
            left = x(span.started + shift)
            right = max(x(span.ended + shift), left + 2)
            flagged = span.outcome not in ("ok", "skipped")
            self.out.append(
                _element(
                    "rect",
                    x=f"{left:.1f}",
                    y=f"{lane_top + lane * (_LANE + 3):.1f}",
                    width=f"{right - left:.1f}",
                    height=_LANE,
                    fill=_PHASE_COLOURS.get(span.label.split(":")[0], "#999"),
                    stroke="#d62728" if flagged else "none",
                    stroke_width=1.5,
                )
            )
        label_top = lane_top + (max(lanes) + 1) * (_LANE + 3) + 2
        labels = [(_phase_text(s), x(s.started + shift), s.label) for s in drawn]
        labels += [(f"released {name}", x(at + shift), "") for name, at in phases.releases]
        labels = [(t, fit_left(lx, 11 + text_width(t), _WIDTH), label) for t, lx, label in labels]
        rows = label_rows([(lx, lx + 11 + text_width(t)) for t, lx, _ in labels])
        for (text, lx, label), row in zip(labels, rows, strict=True):
            y = label_top + row * _ROW + 10
            colour = _PHASE_COLOURS.get(label.split(":")[0], "#333") if label else "#333"
            if label:
                self.out.append(
                    _element(
                        "rect", x=f"{lx:.1f}", y=f"{y - 8:.1f}", width=8, height=8, fill=colour
                    )
                )
            else:
                self.out.append(
                    _element("path", d=f"M{lx:.1f} {y - 8:.1f} l4 8 l4 -8 z", fill="#333")
                )
            self.out.append(_label_text(text, lx + 11, y))
        for _, at in phases.releases:
            px = f"{x(at + shift):.1f}"
            self.out.append(
                _element(
                    "line",
                    x1=px,
                    y1=f"{lane_top - 2:.1f}",
                    x2=px,
                    y2=f"{label_top:.1f}",
                    stroke="#333",
                )
            )
        return label_top + (max(rows, default=-1) + 1) * _ROW + 4

    def _note(self, top: float, text: str) -> float:
        self.out.append(_element("text", text, x=_LEFT, y=top + 10, fill="#d62728"))
        return top + 14


def _legend(y: float) -> list[str]:
    out, x = [], float(_LEFT)
    for _, colour, text in _SERVED:
        out.append(_element("rect", x=f"{x:.1f}", y=y - 9, width=10, height=10, fill=colour))
        out.append(_element("text", text, x=f"{x + 14:.1f}", y=y))
        x += 14 + text_width(text) + 18
    out.append(
        _element(
            "line",
            x1=f"{x:.1f}",
            y1=y - 4,
            x2=f"{x + 20:.1f}",
            y2=y - 4,
            stroke="#555",
            stroke_dasharray="1 3",
        )
    )
    out.append(_element("text", "rate asked", x=f"{x + 24:.1f}", y=y))
    return out


def timeline_svg(results: list[ScenarioResult], params: DrillParams) -> str:
    """Requests over time by who answered them, one panel per scenario, with its moments.

    Where the agent ran, its phases are drawn under the bars on the same time axis.
    """
    start, end = _time_range(results)
    axis = _Axis(start, end)
    levels = _ceiling(results, start, params.rate_per_second)
    title = (
        f"Pod deletion under load ({POD} deleted at t = 0): requests per second "
        f"by start time, {_BUCKET_SECONDS:g} s bars"
    )
    body: list[str] = []
    top = float(_TOP)
    for result in results:
        panel = _Panel(result, axis, levels, params.rate_per_second)
        top = panel.draw(top)
        body += ['<g class="panel">', *panel.out, "</g>"]
    body.append(
        _element(
            "text",
            "seconds from the DELETE",
            x=_LEFT + _PLOT_WIDTH / 2,
            y=f"{top + 4:.1f}",
            text_anchor="middle",
            fill="#555",
        )
    )
    height = math.ceil(top + 20)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    )
    parts = [
        svg,
        _element("rect", width="100%", height="100%", fill="white"),
        _element("text", title, x=_LEFT, y=20, font_size=14),
        '<g class="legend">',
        *_legend(40),
        "</g>",
        *body,
        "</svg>",
    ]
    return "\n".join(parts)
