"""`make bench`'s traffic sample figures, small: the floor, the sampler and their ratio exist."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def measure(monkeypatch: pytest.MonkeyPatch) -> Any:
    """bench/measure.py, imported as `make bench` runs it (a script folder)."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "measure", raising=False)
    return importlib.import_module("measure")


def test_a_sample_of_real_connections_is_timed_against_the_kernels_own_dump(
    measure: Any,
) -> None:
    cost = measure.sample_cost(200, repeats=3)
    assert cost["floor"] > 0
    assert cost["netlink"] > 0
    assert cost["netlink+assess"] > 0
    assert cost["ratio"] == pytest.approx(cost["netlink"] / cost["floor"])
