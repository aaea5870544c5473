"""The budget: release times in plan order before the kubelet's timer; the replan from the API."""

from __future__ import annotations

import pytest

from sidecar.model.deadline import (
    KUBELET_MIN_GRACE_SECONDS,
    Budget,
    plan_budget,
    plan_from_settings,
    replan,
)
from sidecar.model.deletion import PodDeletion, RestartGrace
from sidecar.settings import Settings, from_mapping


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
            (107.0, 109.0),
        ),  # short grace: the reserve is a fifth of it (2 s), not the configured 5 s
        (
            4,
            2,
            (102.2, 103.0),
        ),  # tiny grace: margin at most a quarter, reserve a fifth of the grace
        (
            4,
            3,
            (102.0, 102.5, 103.0),
        ),  # many groups: the reserves never move the first release before half the grace
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


def test_the_budget_states_the_reserve_and_margin_it_really_uses() -> None:
    asked = _budget(30, 2, reserve=30.0, margin=20.0)
    # The margin is at most a quarter of the grace, the reserve at most a fifth of it.
    assert asked.answer_margin_seconds == pytest.approx(7.5)
    assert asked.sigterm_reserve_seconds == pytest.approx(6.0)
    assert asked.release_by == pytest.approx((116.5, 122.5))
    kept = _budget(30, 2)
    assert (kept.sigterm_reserve_seconds, kept.answer_margin_seconds) == (5.0, 1.0)


@pytest.mark.parametrize("grace", [30, 60, 300])
def test_a_long_grace_keeps_the_configured_reserve_whole(grace: int) -> None:
    assert _budget(grace, 2).sigterm_reserve_seconds == 5.0
    assert _budget(grace, 3).release_by == pytest.approx(tuple(100 + grace - d for d in (11, 6, 1)))


def test_grace_10_releases_the_app_no_earlier_than_the_sleep_5_that_loses_nothing() -> None:
    # The pod: grace 10 s, requests up to 3 s, endpoints gone after about 2 s. A fixed
    # `preStop: sleep 5` loses none; the old plan's latest release (4.5 s) cut requests off.
    budget = _budget(10, 2)
    assert budget.release_by[0] - 100.0 >= 5.0
    assert budget.sigterm_reserve_seconds == pytest.approx(2.0)


@pytest.mark.parametrize("groups", [1, 2, 3, 4])
def test_the_first_release_is_never_earlier_than_the_fixed_sleep_that_fits_the_grace(
    groups: int,
) -> None:
    # A fixed sleep cannot tell a drained app from a busy one, so it must leave the app as long
    # for its SIGTERM handling as it sleeps: half the grace, in whole seconds (B17), the
    # drill's sleep-15 at 30 s. Releasing the app at its latest time is then never earlier.
    for grace in range(1, 121):
        budget = _budget(grace, groups)
        assert budget.release_by[0] - 100.0 >= grace // 2, grace
        assert budget.release_by[-1] == pytest.approx(100.0 + grace - min(1.0, grace / 4))


def _settings(**budget: object) -> Settings:
    budget_data: dict[str, object] = {"grace_seconds": 30.0, **budget}
    data = {
        "containers": [{"name": "app"}, {"name": "envoy", "role": "proxy"}],
        "server": {"allow_unauthenticated": True},
        "budget": budget_data,
    }
    return from_mapping(data, {})


def test_plan_from_settings_uses_the_configured_grace_unless_the_api_gave_one() -> None:
    settings = _settings(sigterm_reserve_seconds=4)
    planned = plan_from_settings(settings, started_at=10.0)
    assert planned.hard_deadline == 40.0
    assert planned.release_by == pytest.approx((35.0, 39.0))
    assert plan_from_settings(settings, started_at=10.0, grace_seconds=12).hard_deadline == 22.0


@pytest.mark.parametrize(
    ("deletion", "expected_hard_deadline"),
    [
        # No deletionTimestamp: a restart, or the API said nothing; the configured grace stands.
        (None, None),
        (PodDeletion("u", None, None), None),
        # deletionGracePeriodSeconds 60 with its deadline 60 s from now: the pod's grace wins.
        (PodDeletion("u", 1060.0, 60.0), 160.0),
        # A shorter grace than configured moves the deadline up.
        (PodDeletion("u", 1010.0, 10.0), 110.0),
        # A forced delete (grace 0) still gets the kubelet's 1 s floor, but never past the stamp.
        (PodDeletion("u", 1000.0, 0.0), 100.0),
        # No grace in the answer: the configured grace, bounded by the stamp.
        (PodDeletion("u", 1020.0, None), 120.0),
    ],
)
def test_replan_takes_the_pods_grace_and_deadline_from_the_api(
    deletion: PodDeletion | None, expected_hard_deadline: float | None
) -> None:
    settings = _settings()
    budget = plan_from_settings(settings, started_at=100.0)
    replanned = replan(budget, settings, deletion, now=100.0, now_epoch=1000.0)
    if expected_hard_deadline is None:
        assert replanned is None
        return
    assert replanned is not None
    assert replanned.started_at == 100.0
    assert replanned.hard_deadline == pytest.approx(expected_hard_deadline)
    assert replanned.release_by[-1] < replanned.hard_deadline or replanned.hard_deadline == 100.0


def test_replan_of_a_restart_without_a_spec_grace_keeps_the_configured_one() -> None:
    settings = _settings()
    budget = plan_from_settings(settings, started_at=100.0)
    restart = PodDeletion("u", None, None)
    assert replan(budget, settings, restart, now=101.0, now_epoch=1001.0) is None


@pytest.mark.parametrize(
    ("restart", "restarting", "expected_grace"),
    [
        # The pod's spec grace when the restarting container's liveness probe sets none.
        (RestartGrace(10.0), frozenset({"app"}), 10.0),
        # KEP-2238: the liveness probe's own grace wins over the pod's, shorter or longer.
        (RestartGrace(30.0, (("app", 5.0),)), frozenset({"app"}), 5.0),
        (RestartGrace(30.0, (("app", 90.0),)), frozenset({"app"}), 90.0),
        # Another container's probe grace does not apply to this one.
        (RestartGrace(30.0, (("envoy", 5.0),)), frozenset({"app"}), 30.0),
        # Two containers restarting at once: both hooks are answered by the shorter grace.
        (RestartGrace(30.0, (("envoy", 5.0),)), frozenset({"app", "envoy"}), 5.0),
        # Not told which: whichever container it is, its budget is never longer than its grace.
        (RestartGrace(30.0, (("envoy", 5.0),)), frozenset(), 5.0),
        # A probe grace of 0 still gets the kubelet's 1 s floor.
        (RestartGrace(30.0, (("app", 0.0),)), frozenset({"app"}), 1.0),
    ],
)
def test_replan_of_a_restart_is_bounded_by_the_restarting_containers_grace(
    restart: RestartGrace, restarting: frozenset[str], expected_grace: float
) -> None:
    settings = _settings()
    budget = plan_from_settings(settings, started_at=100.0)
    deletion = PodDeletion("u", None, None, restart=restart)
    replanned = replan(
        budget, settings, deletion, now=100.5, now_epoch=1000.5, restarting=restarting
    )
    assert replanned is not None
    assert replanned.started_at == 100.0
    assert replanned.grace_seconds == expected_grace
    assert replanned.hard_deadline == pytest.approx(100.0 + expected_grace)
    # The same plan shape as a deletion (the flight answers its groups by these times).
    assert len(replanned.release_by) == len(budget.release_by)
    assert replanned.release_by[-1] < replanned.hard_deadline


def test_a_forced_delete_is_raised_to_the_kubelets_one_second_floor() -> None:
    settings = _settings()
    budget = plan_from_settings(settings, started_at=100.0)
    replanned = replan(budget, settings, PodDeletion("u", 1005.0, 0.0), now=100.0, now_epoch=1000.0)
    assert replanned is not None
    assert replanned.grace_seconds == KUBELET_MIN_GRACE_SECONDS
    assert replanned.hard_deadline == pytest.approx(101.0)
