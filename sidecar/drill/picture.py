"""The drill's timeline picture (SVG): bars by who answered, the moments, the agent's phases.

The geometry is pure (sidecar/drill/timeline.py) and the agent's phases come from its log
(sidecar/drill/phases.py); this module writes the SVG from them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sidecar.drill import phase_strip
from sidecar.drill.cluster import POD
from sidecar.drill.svg import (
    LEFT,
    PLOT_HEIGHT,
    PLOT_WIDTH,
    ROW,
    TOP,
    WIDTH,
    Axis,
    element,
    label_text,
)
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


#: Bars from the bottom: the deleted pod's answers, the other pods', the failures.
_SERVED = (
    ("deleted", "#f28e2b", "answered by the deleted pod"),
    ("others", "#4e79a7", "answered by the other pods"),
    ("failed", "#d62728", "failed (HTTP error or no answer)"),
)


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
        self, result: ScenarioResult, axis: Axis, levels: list[float], rate: float
    ) -> None:
        self.result, self.axis, self.levels, self.rate = result, axis, levels, rate
        self.out: list[str] = []
        #: The y of the rate axis' zero, known once the mark labels above the plot are laid out.
        self.base = 0.0

    def y(self, per_second: float) -> float:
        return self.base - per_second / self.levels[-1] * PLOT_HEIGHT

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
            element("text", title, x=LEFT, y=top + 12, font_size=13, font_weight="bold"),
            element("text", summary, x=LEFT + 8.5 * len(title) + 12, y=top + 12, fill="#555"),
        ]
        groups = merge_marks(_marks(result), axis.x)
        texts = [g.text for g in groups]
        lefts = [
            fit_left(axis.x(g.seconds) + 3, text_width(t), WIDTH)
            for g, t in zip(groups, texts, strict=True)
        ]
        rows = label_rows([(x, x + text_width(t)) for x, t in zip(lefts, texts, strict=True)])
        depth = max(rows, default=-1) + 1
        # The row nearest the plot is 0, so a label's line never runs through the rows above it.
        label_base = top + 20 + depth * ROW
        self.base = label_base + 6 + PLOT_HEIGHT
        plot_top = self.base - PLOT_HEIGHT
        self._rate_axis(plot_top)
        self.out.append('<g class="bars">')
        self._bars()
        self.out.append("</g>")
        bottom = self._time_axis()
        self.out.append('<g class="agent-phases">')
        strip_end = phase_strip.draw(self.out, self.axis, self.result, bottom + 8)
        self.out.append("</g>")
        line_end = strip_end if strip_end > bottom + 8 else self.base
        # Every line first, then every label on its white halo, above any line.
        for group, row in zip(groups, rows, strict=True):
            for mark in group.marks:
                px = f"{axis.x(mark.seconds):.1f}"
                self.out.append(
                    element(
                        "line",
                        x1=px,
                        y1=f"{label_base - row * ROW - 9:.1f}",
                        x2=px,
                        y2=f"{line_end:.1f}",
                        stroke=mark.colour,
                        stroke_width=1.5,
                        stroke_dasharray="4 3",
                    )
                )
        for group, x, text, row in zip(groups, lefts, texts, rows, strict=True):
            self.out.append(label_text(text, x, label_base - row * ROW, group.marks[0].colour))
        return max(bottom, strip_end) + 16

    def _rate_axis(self, plot_top: float) -> None:
        for level in self.levels:
            y = f"{self.y(level):.1f}"
            self.out.append(
                element("line", x1=LEFT, y1=y, x2=LEFT + PLOT_WIDTH, y2=y, stroke="#eee")
            )
            self.out.append(
                element(
                    "text",
                    f"{level:g}",
                    x=LEFT - 6,
                    y=f"{self.y(level) + 4:.1f}",
                    text_anchor="end",
                )
            )
        middle = (plot_top + self.base) / 2
        self.out.append(
            element(
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
            element(
                "line",
                x1=LEFT,
                y1=asked,
                x2=LEFT + PLOT_WIDTH,
                y2=asked,
                stroke="#555",
                stroke_dasharray="1 3",
            )
        )
        self.out += [
            element(
                "line", x1=LEFT, y1=self.base, x2=LEFT + PLOT_WIDTH, y2=self.base, stroke="#888"
            ),
            element("line", x1=LEFT, y1=self.base, x2=LEFT, y2=f"{plot_top:.1f}", stroke="#888"),
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
                    element(
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
                    element("line", x1=x, y1=self.base, x2=x, y2=self.base + 3, stroke="#888")
                )
                self.out.append(
                    element("text", f"{second:g}", x=x, y=self.base + 14, text_anchor="middle")
                )
        return self.base + 16


def _legend(y: float) -> list[str]:
    out, x = [], float(LEFT)
    for _, colour, text in _SERVED:
        out.append(element("rect", x=f"{x:.1f}", y=y - 9, width=10, height=10, fill=colour))
        out.append(element("text", text, x=f"{x + 14:.1f}", y=y))
        x += 14 + text_width(text) + 18
    out.append(
        element(
            "line",
            x1=f"{x:.1f}",
            y1=y - 4,
            x2=f"{x + 20:.1f}",
            y2=y - 4,
            stroke="#555",
            stroke_dasharray="1 3",
        )
    )
    out.append(element("text", "rate asked", x=f"{x + 24:.1f}", y=y))
    return out


def timeline_svg(results: list[ScenarioResult], params: DrillParams) -> str:
    """Requests over time by who answered them, one panel per scenario, with its moments.

    Where the agent ran, its phases are drawn under the bars on the same time axis.
    """
    start, end = _time_range(results)
    axis = Axis(start, end)
    levels = _ceiling(results, start, params.rate_per_second)
    title = (
        f"Pod deletion under load ({POD} deleted at t = 0): requests per second "
        f"by start time, {_BUCKET_SECONDS:g} s bars"
    )
    body: list[str] = []
    top = float(TOP)
    for result in results:
        panel = _Panel(result, axis, levels, params.rate_per_second)
        top = panel.draw(top)
        body += ['<g class="panel">', *panel.out, "</g>"]
    body.append(
        element(
            "text",
            "seconds from the DELETE",
            x=LEFT + PLOT_WIDTH / 2,
            y=f"{top + 4:.1f}",
            text_anchor="middle",
            fill="#555",
        )
    )
    height = math.ceil(top + 20)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    )
    parts = [
        svg,
        element("rect", width="100%", height="100%", fill="white"),
        element("text", title, x=LEFT, y=20, font_size=14),
        '<g class="legend">',
        *_legend(40),
        "</g>",
        *body,
        "</svg>",
    ]
    return "\n".join(parts)
