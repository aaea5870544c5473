"""The drill's output: a table per run, a timeline picture (SVG), and a JSON document."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from sidecar.drill.params import CLASSIC_SLEEP_SECONDS

if TYPE_CHECKING:
    from sidecar.drill.params import DrillParams
    from sidecar.drill.scenarios import ScenarioResult

_COLUMNS = (
    ("scenario", "label", "{}"),
    ("requests", "requests", "{}"),
    ("failed", "failed", "{}"),
    ("p99 ms", "latency_p99_ms", "{}"),
    ("app SIGTERM s", "app_sigterm_seconds", "{}"),
    ("pod gone s", "pod_gone_seconds", "{}"),
    ("budget left s", "budget_left_seconds", "{}"),
    ("rate /s", "rate", "{}"),
)
#: Shown when a scenario routed through the registry: when its key was marked down (the
#: agent's override), removed (deleted, or expired with its lease), and when callers moved.
_REGISTRY_COLUMNS = (
    ("marked down s", "registry_marked_down_seconds", "{}"),
    ("removed s", "registry_removed_seconds", "{}"),
    ("callers moved s", "callers_left_seconds", "{}"),
)
#: Seconds per bar of the timeline.
_BUCKET_SECONDS = 0.25
_MARKS = (
    ("delete", "t0", "#444"),
    ("endpoint not ready", "unready_at", "#1f77b4"),
    ("data plane moved", "moved_at", "#9467bd"),
    ("app SIGTERM", "app_sigterm", "#ff7f0e"),
    ("pod gone", "pod_gone_at", "#2ca02c"),
    ("marked down", "marked_down_at", "#17becf"),
    ("key removed", "removed_at", "#8c564b"),
    ("callers moved", "callers_left_at", "#e377c2"),
)


def rows(results: list[ScenarioResult], params: DrillParams) -> list[dict[str, Any]]:
    """Each scenario's figures, with the failures summed and the rates side by side."""
    out = []
    for result in results:
        row = result.row(params.grace_seconds)
        row["failed"] = row["http_errors"] + row["transport_errors"]
        row["rate"] = f"{row['rate_achieved']}/{row['rate_asked']:g}"
        row["label"] = _label(row["scenario"], params)
        if row["routing"] != "service":
            row["label"] += f"@{row['routing']}"
        out.append(row)
    return out


def _label(recipe: str, params: DrillParams) -> str:
    """The recipe as shown: `sleep-15` names the sleep it really had (shorter at a short grace)."""
    if recipe == "sleep-15" and params.sleep_seconds != CLASSIC_SLEEP_SECONDS:
        return f"sleep-{params.sleep_seconds:g}"
    return recipe


def table(results: list[ScenarioResult], params: DrillParams) -> str:
    """The terminal table, one scenario per line, failures by kind below it."""
    data = rows(results, params)
    columns: tuple[tuple[str, str, str], ...] = _COLUMNS
    if any(row["routing"] == "registry" for row in data):
        columns += _REGISTRY_COLUMNS
    cells = [[head for head, _, _ in columns]] + [
        ["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in columns]
        for row in data
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for row in data:
        if row["failures"]:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(row["failures"].items()))
            lines.append(f"  {row['label']} failures: {kinds}")
        if row["key_present_at_end"]:
            lines.append(f"  {row['label']}: its key was still registered at the end")
    return "\n".join(lines)


def document(results: list[ScenarioResult], params: DrillParams) -> dict[str, Any]:
    """Everything, for `--json`."""
    return {"params": asdict(params), "scenarios": rows(results, params)}


def _marks(result: ScenarioResult) -> list[tuple[str, float, str]]:
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
        (label, moment - result.t0, colour)
        for label, key, colour in _MARKS
        if (moment := moments[key]) is not None
    ]


def _element(tag: str, text: str = "", **attributes: object) -> str:
    attrs = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f"<{tag} {attrs}>{escape(text)}</{tag}>" if text else f"<{tag} {attrs}/>"


class _Axes:
    """Maps seconds and rates to one panel's pixels."""

    def __init__(self, start: float, end: float, top: float, ceiling: float) -> None:
        self.start, self.end, self.ceiling = start, end, ceiling
        self.base = top + _PANEL_HEIGHT - 40
        self.top = top

    def x(self, t: float) -> float:
        span = max(self.end - self.start, 1e-9)
        return _LEFT + (t - self.start) / span * _PLOT_WIDTH

    def y(self, rate: float) -> float:
        return self.base - min(rate, self.ceiling) / self.ceiling * (_PANEL_HEIGHT - 60)


_WIDTH, _PANEL_HEIGHT, _LEFT, _TOP = 900, 170, 60, 40
_PLOT_WIDTH = _WIDTH - _LEFT - 20


def _bars(result: ScenarioResult, axes: _Axes) -> list[str]:
    """Answered (green) and failed (red, stacked on top) requests per bucket of start time."""
    buckets: dict[int, list[int]] = {}
    for request in result.load.requests:
        slot = int((request.started - result.t0 - axes.start) // _BUCKET_SECONDS)
        buckets.setdefault(slot, [0, 0])[0 if request.kind == "ok" else 1] += 1
    out = []
    for slot, (good, bad) in sorted(buckets.items()):
        t = axes.start + slot * _BUCKET_SECONDS
        bar = max(1.0, axes.x(t + _BUCKET_SECONDS) - axes.x(t) - 1)
        for count, colour, below in ((good, "#2ca02c", 0), (bad, "#d62728", good)):
            if count:
                top = axes.y((count + below) / _BUCKET_SECONDS)
                height = axes.y(below / _BUCKET_SECONDS) - top
                out.append(
                    _element(
                        "rect",
                        x=f"{axes.x(t):.1f}",
                        y=f"{top:.1f}",
                        width=f"{bar:.1f}",
                        height=f"{height:.1f}",
                        fill=colour,
                    )
                )
    return out


def _panel(result: ScenarioResult, axes: _Axes, rate: float) -> list[str]:
    title = result.recipe if result.routing == "service" else f"{result.recipe}@{result.routing}"
    out = [
        _element("text", title, x=_LEFT, y=axes.top + 12, font_size=13, font_weight="bold"),
        _element(
            "line", x1=_LEFT, y1=axes.base, x2=_LEFT + _PLOT_WIDTH, y2=axes.base, stroke="#888"
        ),
        _element("line", x1=_LEFT, y1=axes.base, x2=_LEFT, y2=axes.y(axes.ceiling), stroke="#888"),
    ]
    out += [
        _element("text", f"{tick:g}/s", x=_LEFT - 6, y=axes.y(tick) + 4, text_anchor="end")
        for tick in (0, rate)
    ]
    out += _bars(result, axes)
    # The marks' labels go in rows beside the title, so they never cover the bars.
    first_x = label_x = _LEFT + 8.0 * (len(title) + 2)
    label_y = axes.top + 12
    for label, moment, colour in _marks(result):
        text = f"{label} {moment:.1f} s"
        if label_x + 6.2 * len(text) > _WIDTH:
            label_x, label_y = first_x, label_y + 13
        px = f"{axes.x(moment):.1f}"
        out.append(
            _element(
                "line",
                x1=px,
                y1=axes.y(axes.ceiling),
                x2=px,
                y2=axes.base,
                stroke=colour,
                stroke_width=1.5,
                stroke_dasharray="4 3",
            )
        )
        out.append(_element("text", text, x=label_x, y=label_y, fill=colour))
        label_x += 6.2 * len(text) + 14
    out += [
        _element(
            "text", str(second), x=f"{axes.x(second):.1f}", y=axes.base + 14, text_anchor="middle"
        )
        for second in range(int(axes.start), int(axes.end) + 1)
    ]
    return out


def timeline_svg(results: list[ScenarioResult], params: DrillParams) -> str:
    """Request rate and failures over time, one panel per scenario, with the phase marks."""
    starts = [r.started - res.t0 for res in results for r in res.load.requests]
    start, end = (min(starts), max(starts)) if starts else (-1.0, 1.0)
    height = _TOP + _PANEL_HEIGHT * len(results) + 60
    title = (
        "Pod deletion under load: requests per second by start time "
        "(green: answered, red: failed); t = 0 is the DELETE"
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    )
    parts = [
        svg,
        _element("rect", width="100%", height="100%", fill="white"),
        _element("text", title, x=_LEFT, y=20, font_size=14),
    ]
    for index, result in enumerate(results):
        axes = _Axes(start, end, _TOP + index * _PANEL_HEIGHT, params.rate_per_second * 1.5)
        parts += _panel(result, axes, params.rate_per_second)
    legend = f"seconds from the DELETE; bars: {_BUCKET_SECONDS} s of requests by start time"
    parts.append(_element("text", legend, x=_LEFT, y=height - 20))
    parts.append("</svg>")
    return "\n".join(parts)
