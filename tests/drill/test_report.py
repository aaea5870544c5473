"""The drill's table, picture and JSON, from results made by hand: what each figure says."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from sidecar.drill.kubelet import Killed
from sidecar.drill.load import LoadRun, Request
from sidecar.drill.params import DrillParams
from sidecar.drill.picture import timeline_svg
from sidecar.drill.report import document, table
from sidecar.drill.scenarios import ScenarioResult

PARAMS = DrillParams(rate_per_second=10, grace_seconds=30)


def result(recipe: str, failed: int) -> ScenarioResult:
    load = LoadRun(10, started_at=98.0, stopped_at=104.0)
    load.requests = [Request(98.0 + i / 10, 98.2 + i / 10, 200, None, "web-2") for i in range(60)]
    load.requests += [Request(100.5, 100.6, 503, None) for _ in range(failed)]
    killed = {"app": Killed("app", sigterm_at=103.0, exited_at=103.1)}
    return ScenarioResult(
        recipe,  # type: ignore[arg-type]
        t0=100.0,
        load=load,
        killed=killed,
        unready_at=100.1,
        moved_at=102.1,
        pod_gone_at=103.5,
    )


RESULTS = [result("no-hook", 5), result("coordinated", 0)]


def test_the_table_has_a_line_per_scenario_and_names_the_failures() -> None:
    text = table(RESULTS, PARAMS)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["scenario", "requests", "failed"]
    no_hook = next(line for line in lines if line.startswith("no-hook "))
    assert no_hook.split()[1:3] == ["65", "5"]
    assert "3.0" in no_hook  # app SIGTERM, seconds after the DELETE
    assert "no-hook failures: HTTP 503: 5" in text


def test_the_json_document_carries_the_parameters_and_every_figure() -> None:
    doc = json.loads(json.dumps(document(RESULTS, PARAMS)))
    assert doc["params"]["rate_per_second"] == 10
    coordinated = doc["scenarios"][1]
    assert coordinated["scenario"] == "coordinated"
    assert coordinated["failed"] == 0
    assert coordinated["pod_gone_seconds"] == 3.5
    assert coordinated["budget_left_seconds"] == 26.5
    assert coordinated["rate_asked"] == 10


def test_the_picture_is_svg_with_a_panel_per_scenario_axes_and_marks() -> None:
    root = ET.fromstring(timeline_svg(RESULTS, PARAMS))  # noqa: S314 - our own output
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"no-hook", "coordinated"} <= set(texts)
    assert any(t.startswith("app SIGTERM 3.0 s") for t in texts)
    assert any(t.startswith("data plane moved 2.1 s") for t in texts)
    assert "requests/s" in texts  # the rate axis' unit, with round ticks up to the tallest bar
    assert {"0", "10", "20", "30"} <= set(texts)
    bars = [
        r for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "bars" for r in g
    ]
    reds = [r for r in bars if r.get("fill") == "#d62728"]
    assert len(reds) == 1  # the five failures fall in one bucket of the no-hook panel


def test_the_sleep_recipe_is_shown_with_the_sleep_it_really_had() -> None:
    short = DrillParams(rate_per_second=10, grace_seconds=10, sleep_seconds=5.0)
    lines = table([result("sleep-15", 2)], short).splitlines()
    assert lines[2].split()[0] == "sleep-5"
    assert "  sleep-5 failures: HTTP 503: 2" in lines
    # The JSON keeps the recipe's id (bench/run.py looks rows up by it).
    assert document([result("sleep-15", 0)], short)["scenarios"][0]["scenario"] == "sleep-15"
    assert table([result("sleep-15", 0)], PARAMS).splitlines()[2].split()[0] == "sleep-15"


def test_a_registry_scenario_shows_when_its_key_was_marked_down_removed_and_left_behind() -> None:
    routed = result("coordinated", 0)
    routed.routing = "registry"
    routed.marked_down_at, routed.callers_left_at, routed.removed_at = 100.3, 101.6, 103.2
    routed.key_present_at_end = False
    lines = table([result("no-hook", 0), routed], PARAMS).splitlines()
    assert lines[0].endswith("marked down s  removed s  callers moved s")
    row = next(line for line in lines if line.startswith("coordinated@registry "))
    assert row.split()[-3:] == ["0.3", "3.2", "1.6"]
    assert next(line for line in lines if line.startswith("no-hook ")).split()[-3:] == ["-"] * 3
    doc = document([routed], PARAMS)["scenarios"][0]
    assert (doc["scenario"], doc["routing"]) == ("coordinated", "registry")
    assert doc["key_present_at_end"] is False
    root = ET.fromstring(timeline_svg([routed], PARAMS))  # noqa: S314 - our own output
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "coordinated@registry" in texts
    assert {"marked down 0.3 s", "key removed 3.2 s", "callers moved 1.6 s"} <= set(texts)


def test_a_key_still_registered_at_the_end_is_called_out() -> None:
    routed = result("no-hook", 0)
    routed.routing, routed.key_present_at_end = "registry", True
    assert "  no-hook@registry: its key was still registered at the end" in table([routed], PARAMS)
