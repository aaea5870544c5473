"""docs/budget.md's plan table is what `plan_budget` computes with the default budget keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.model.deadline import plan_budget
from sidecar.settings.schema import BudgetSettings

DOC = Path(__file__).parents[2] / "docs" / "budget.md"


def _plan_rows() -> dict[int, list[str]]:
    """The table's rows by grace, its cells as written."""
    lines = DOC.read_text(encoding="utf-8").split("## The plan for the usual graces", 1)[1]
    rows = [line for line in lines.splitlines() if line.startswith("| ") and line[2].isdigit()]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {int(row[0]): row for row in cells}


@pytest.mark.parametrize("grace", [5, 10, 30, 60])
def test_the_documented_plan_is_the_computed_plan(grace: int) -> None:
    defaults = BudgetSettings()
    budget = plan_budget(
        started_at=0.0,
        grace_seconds=grace,
        group_count=2,
        sigterm_reserve_seconds=defaults.sigterm_reserve_seconds,
        answer_margin_seconds=defaults.answer_margin_seconds,
    )
    computed = [
        budget.answer_margin_seconds,
        budget.sigterm_reserve_seconds,
        *budget.release_by,
        grace // 2,
    ]
    written = [float(cell) for cell in _plan_rows()[grace][1:6]]
    assert written == pytest.approx(computed)
    # Never worse than the fixed sleep that fits the same grace.
    assert budget.release_by[0] >= grace // 2
