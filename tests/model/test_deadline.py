from __future__ import annotations

import pytest

from sidecar.model.deadline import Budget, plan_budget


def _budget(
    grace: float,
    groups: int,
    *,
    reserve: float = 5.0,
    margin: float = 1.0,
    deletion: float | None = None,
) -> Budget:
    return plan_budget(
        started_at=100.0,
        grace_seconds=grace,
        group_count=groups,
        sigterm_reserve_seconds=reserve,
        answer_margin_seconds=margin,
        deletion_deadline=deletion,
    )


@pytest.mark.parametrize(
    ("grace", "groups", "expected"),
    [
        (30, 1, (129.0,)),  # one group: answered a margin before the kubelet's timer
        (
            30,
            2,
            (124.0, 129.0),
        ),  # app, proxy: the app keeps its SIGTERM reserve before the proxy goes
        (30, 3, (119.0, 124.0, 129.0)),
        (
            10,
            2,
            (104.5, 109.0),
        ),  # short grace: the reserve shrinks so half the budget stays for the phases
        (
            4,
            2,
            (101.5, 103.0),
        ),  # tiny grace: margin at most a quarter, reserves at most half the rest
    ],
)
def test_release_times_keep_plan_order_and_end_before_the_kubelets_timer(
    grace: float, groups: int, expected: tuple[float, ...]
) -> None:
    budget = _budget(grace, groups)
    assert budget.release_by == pytest.approx(expected)
    assert list(budget.release_by) == sorted(budget.release_by)
    assert budget.release_by[-1] < budget.hard_deadline == 100.0 + grace


def test_deletion_timestamp_earlier_than_grace_moves_the_deadline_up() -> None:
    budget = _budget(30, 2, deletion=120.0)
    assert budget.hard_deadline == 120.0
    assert budget.release_by[-1] == pytest.approx(119.0)


def test_deletion_timestamp_in_the_past_leaves_no_time_but_keeps_order() -> None:
    budget = _budget(30, 2, deletion=90.0)
    assert budget.hard_deadline == 100.0
    assert budget.release_by == (100.0, 100.0)


def test_phase_deadline_is_the_earlier_of_its_cap_and_its_groups_turn() -> None:
    budget = _budget(30, 2)
    assert budget.phase_deadline(101.0, 5.0) == 106.0
    assert budget.phase_deadline(101.0, 60.0) == budget.release_by[0]
    assert budget.phase_deadline(101.0, 60.0, group=1) == budget.release_by[1]


def test_remaining_is_never_negative() -> None:
    budget = _budget(10, 1)
    assert budget.remaining(105.0) == 5.0
    assert budget.remaining(500.0) == 0.0
