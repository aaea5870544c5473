"""The drill's output: a table per run and a JSON document (its picture: drill/picture.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

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
