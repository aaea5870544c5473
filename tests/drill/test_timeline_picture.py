"""The drill's timeline SVG drawn from results made by hand: what a reader sees at a glance."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any

from sidecar.drill.kubelet import Killed
from sidecar.drill.load import LoadRun, Request
from sidecar.drill.params import DrillParams
from sidecar.drill.picture import timeline_svg
from sidecar.drill.scenarios import ScenarioResult
from sidecar.drill.timeline import text_width

SVG = "{http://www.w3.org/2000/svg}"
PARAMS = DrillParams(rate_per_second=40, grace_seconds=30)
T0 = 100.0


def at(seconds: float) -> str:
    whole, part = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"2026-12-01T12:00:{whole:02d}.{part:06d}Z"


#: The agent's log: first hook at 10.0 wall, which the kubelet called at T0 + 0.2.
AGENT_LOG: list[dict[str, Any]] = [
    {"event": "prestop_received", "container": "app", "timestamp": at(10.0)},
    {"event": "phase_finished", "phase": "confirm", "outcome": "ok", "duration_seconds": 0.1,
     "by": "api", "timestamp": at(10.1)},
    {"event": "phase_started", "phase": "unroute", "timestamp": at(10.1)},
    {"event": "phase_finished", "phase": "unroute", "outcome": "ok", "duration_seconds": 0.4,
     "verdict": "out_of_rotation", "timestamp": at(10.5)},
    {"event": "phase_started", "phase": "quiesce", "timestamp": at(10.5)},
    {"event": "phase_finished", "phase": "quiesce", "outcome": "ok", "duration_seconds": 2.0,
     "ended_by": "peers_closed", "timestamp": at(12.5)},
    {"event": "phase_started", "phase": "drain", "timestamp": at(12.5)},
    {"event": "phase_finished", "phase": "drain", "outcome": "degraded", "duration_seconds": 0.3,
     "timestamp": at(12.8)},
    {"event": "container_released", "container": "app", "timestamp": at(12.8)},
    {"event": "phase_finished", "phase": "retire", "outcome": "skipped", "duration_seconds": 0.0,
     "timestamp": at(12.9)},
]  # fmt: skip


def result(recipe: str, *, handover: float, failures: int = 0) -> ScenarioResult:
    """Load at 40/s from -2 s to 5 s: the deleted pod answers half until `handover`."""
    load = LoadRun(40, started_at=T0 - 2, stopped_at=T0 + 5)
    for i in range(280):
        t = T0 - 2 + i / 40
        pod = "web-1" if i % 2 == 0 and t < T0 + handover else "web-2"
        load.requests.append(Request(t, t + 0.1, 200, None, pod))
    load.requests += [Request(T0 + 1.01, T0 + 1.1, None, "ServerDisconnectedError")] * failures
    killed = {
        "app": Killed("app", hook_started=T0 + 0.2, sigterm_at=T0 + 3.0, exited_at=T0 + 3.1),
        "proxy": Killed("proxy", hook_started=T0 + 0.21, sigterm_at=T0 + 3.2),
    }
    return ScenarioResult(
        recipe,  # type: ignore[arg-type]
        t0=T0,
        load=load,
        killed=killed,
        unready_at=T0,  # the same instant as the DELETE: one merged label
        moved_at=T0 + 2.0,
        pod_gone_at=T0 + 3.5,
    )


def picture(results: list[ScenarioResult]) -> ET.Element:
    return ET.fromstring(timeline_svg(results, PARAMS))  # noqa: S314 - our own output


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def coordinated() -> ScenarioResult:
    done = result("coordinated", handover=2.0)
    done.agent_log = AGENT_LOG
    return done


def test_bars_are_stacked_deleted_pod_then_the_others_then_failures() -> None:
    root = picture([result("no-hook", handover=0.0, failures=30)])
    (bars,) = groups(root, "bars")
    by_x: dict[str, list[ET.Element]] = defaultdict(list)
    for rect in bars:
        by_x[rect.get("x", "")].append(rect)
    fills = {tuple(r.get("fill") for r in stack) for stack in by_x.values()}
    # Before the DELETE both pods answer, after it the others alone, and the failures on top.
    assert ("#f28e2b", "#4e79a7") in fills
    assert ("#4e79a7",) in fills
    assert ("#4e79a7", "#d62728") in fills
    for stack in by_x.values():
        for lower, upper in itertools.pairwise(stack):
            # Each part sits right on the one below it.
            assert (
                abs(
                    float(upper.get("y", 0))
                    + float(upper.get("height", 0))
                    - float(lower.get("y", 0))
                )
                < 0.15
            )
    legend = texts(groups(root, "legend")[0])
    assert "answered by the deleted pod" in legend
    assert "answered by the other pods" in legend
    assert "failed (HTTP error or no answer)" in legend


def test_no_bar_is_taller_than_the_plot_and_the_ticks_are_round() -> None:
    # 30 failures in one bucket: 40/s asked, a bar of 160/s.
    root = picture([result("no-hook", handover=0.0, failures=30)])
    (panel,) = groups(root, "panel")
    grid = [
        float(line.get("y1", 0))
        for line in panel.iter(f"{SVG}line")
        if line.get("stroke") == "#eee"
    ]
    top, base = min(grid), max(grid)
    for rect in groups(root, "bars")[0]:
        y, height = float(rect.get("y", 0)), float(rect.get("height", 0))
        assert y >= top - 0.05
        assert y + height <= base + 0.05
    assert {"0", "50", "100", "150", "200"} <= set(texts(panel))
    assert "requests/s" in texts(panel)


def test_labels_never_overlap_in_a_row() -> None:
    root = picture([result("no-hook", handover=0.0), coordinated()])
    labels = [t for t in root.iter(f"{SVG}text") if t.get("stroke") == "white"]
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for label in labels:
        left = float(label.get("x", 0))
        rows[label.get("y", "")].append((left, left + text_width(label.text or "")))
    assert len(labels) > 5
    for spans in rows.values():
        spans.sort()
        for (_, right), (left, _) in itertools.pairwise(spans):
            assert right <= left
    # The DELETE and the endpoint's not-ready are one instant: one label, not two on each other.
    shown = texts(root)
    assert "delete, endpoint not ready 0.0 s" in shown
    assert not any(t.startswith("delete 0.0 s") for t in shown)


def test_the_agent_strip_shows_each_phase_and_what_ended_it_on_the_drill_clock() -> None:
    root = picture([result("no-hook", handover=0.0), coordinated()])
    strips = groups(root, "agent-phases")
    assert texts(strips[0]) == []  # no agent in no-hook: no strip
    strip = strips[1]
    shown = texts(strip)
    assert "quiesce 2.0 s, ended by peers_closed" in shown
    assert "unroute 0.4 s, ended by out_of_rotation" in shown
    assert "confirm 100 ms, ended by api" in shown
    assert "drain 0.3 s: degraded" in shown  # no signal in the log: the outcome
    assert "released app" in shown
    assert any("skipped: retire" in t for t in shown)
    phases = [r for r in strip.iter(f"{SVG}rect") if r.get("height") == "12"]
    assert len(phases) == 4
    lefts = [float(r.get("x", 0)) for r in phases]
    assert lefts == sorted(lefts)
    assert len({r.get("y") for r in phases}) == 1  # one after the other: one lane
    assert phases[3].get("stroke") == "#d62728"  # degraded stands out
    # The first hook was called at 0.2 s: the release at +2.8 s lands at 3.0 s, where the
    # app's SIGTERM mark is.
    release = next(line for line in strip.iter(f"{SVG}line") if line.get("stroke") == "#333")
    sigterm = [
        line
        for line in groups(root, "panel")[1].iter(f"{SVG}line")
        if line.get("stroke") == "#8c564b"
    ]
    assert [line.get("x1") for line in sigterm] == [release.get("x1")]


def test_a_broken_agent_log_is_named_and_the_picture_still_drawn() -> None:
    broken = coordinated()
    broken.agent_log = [{"event": "phase_finished", "phase": "drain", "duration_seconds": 1}]
    root = picture([broken])
    assert any(
        t.startswith("agent phases not drawn: agent log line 'phase_finished' has no timestamp")
        for t in texts(root)
    )
    assert len(groups(root, "bars")[0]) > 0
