"""`make bench`'s injector figures, at a small rate: the injector as the image runs it answers."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """bench/measure.py and bench/run.py, imported as `make bench` runs them (a script folder)."""
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("measure", "run"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("measure"), importlib.import_module("run")


async def test_the_injector_answers_every_review_with_a_patch_and_the_figures_show(
    bench: tuple[Any, Any],
) -> None:
    measure, run = bench
    figures = await measure.webhook_latency(sys.executable, 50, 1.0)
    assert figures["requests"] == 50
    assert figures["errors"] == 0
    assert 0 < figures["p50"] <= figures["p99"] < 1000
    # The injector's own time per review, from its log: part of what the client waited.
    assert 0 < figures["server_p50"] <= figures["server_p99"] <= figures["p99"]
    assert 25 < figures["rate"] <= 55
    lines = run.webhook_section(figures, 1.0)
    assert "| errors | 0 | 0: **met** |" in lines
    assert any(line.startswith("| p99 latency (ms) |") for line in lines)


async def test_a_review_the_injector_cannot_answer_is_counted_as_an_error(
    bench: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count can fail: reviews without a pod get no patch, so each is an error."""
    measure, _ = bench
    monkeypatch.setattr(measure, "WEBHOOK_POD", None)
    figures = await measure.webhook_latency(sys.executable, 20, 0.5)
    assert figures["errors"] == figures["requests"] == 10
