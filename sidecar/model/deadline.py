"""The one budget: when the kubelet stops waiting, and when each release group must be answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.model.plan import release_groups

if TYPE_CHECKING:
    from sidecar.model.deletion import PodDeletion
    from sidecar.settings import Settings

#: The kubelet never gives a container less than this, even after a forced delete (B1).
KUBELET_MIN_GRACE_SECONDS = 1.0
#: Each SIGTERM reserve is at most this share of the usable grace (docs/budget.md): with a
#: short grace the first group's latest release moves later instead of leaving it 5 s early.
RESERVE_SHARE_OF_GRACE = 0.2


@dataclass(frozen=True)
class Budget:
    """Moments on the loop clock for one shutdown; every phase runs inside them."""

    started_at: float
    grace_seconds: float
    #: The kubelet stops waiting for hooks here and sends SIGTERM (SIGKILL at least 2 s later).
    hard_deadline: float
    #: Latest moment to answer each release group's hooks, in plan order; the last is the proxy's.
    release_by: tuple[float, ...]
    #: The reserve each group really leaves the next one, after the caps of `plan_budget`.
    sigterm_reserve_seconds: float = 0.0
    #: How long before the kubelet's timer the last group is really answered.
    answer_margin_seconds: float = 0.0

    def remaining(self, now: float) -> float:
        """Seconds left before the kubelet's own timer fires (never negative)."""
        return max(0.0, self.hard_deadline - now)

    def phase_deadline(self, now: float, cap_seconds: float, group: int = 0) -> float:
        """When a phase starting now must end: its own cap, and never after its group's turn."""
        return min(now + cap_seconds, self.release_by[group])


def plan_budget(
    *,
    started_at: float,
    grace_seconds: float,
    group_count: int,
    sigterm_reserve_seconds: float,
    answer_margin_seconds: float,
    deletion_deadline: float | None = None,
) -> Budget:
    """Split the grace period into release times, latest group last.

    The kubelet counts each container's grace from the moment it starts the hooks, and the
    API's deletionTimestamp is an upper bound on the same instant. The last group (the proxy)
    is answered `answer_margin_seconds` before that; each earlier group leaves the next one
    `sigterm_reserve_seconds` for its own SIGTERM handling, sized by the grace: at most
    `RESERVE_SHARE_OF_GRACE` of it, and never so much that the first release comes before
    half of the usable time. So the first group's latest release is never earlier than a
    fixed `sleep` of half the grace would end (docs/budget.md).
    """
    hard = started_at + grace_seconds
    if deletion_deadline is not None:
        hard = min(hard, deletion_deadline)
    hard = max(hard, started_at)
    usable = hard - started_at
    margin = min(answer_margin_seconds, usable / 4)
    last = hard - margin
    steps = max(group_count - 1, 0)
    step = 0.0
    if steps:
        # The margin is at most a quarter, so at least a quarter of the grace is left to share.
        room = (last - started_at) - usable / 2
        step = min(sigterm_reserve_seconds, RESERVE_SHARE_OF_GRACE * usable, room / steps)
    release_by = tuple(last - step * (steps - index) for index in range(group_count))
    return Budget(started_at, grace_seconds, hard, release_by, step, margin)


def plan_from_settings(
    settings: Settings,
    *,
    started_at: float,
    grace_seconds: float | None = None,
    deletion_deadline: float | None = None,
) -> Budget:
    """The budget of this pod's release plan; the configured grace unless the API gave one."""
    budget = settings.budget
    return plan_budget(
        started_at=started_at,
        grace_seconds=budget.grace_seconds if grace_seconds is None else grace_seconds,
        group_count=len(release_groups(settings)),
        sigterm_reserve_seconds=budget.sigterm_reserve_seconds,
        answer_margin_seconds=budget.answer_margin_seconds,
        deletion_deadline=deletion_deadline,
    )


def replan(
    budget: Budget,
    settings: Settings,
    deletion: PodDeletion | None,
    *,
    now: float,
    now_epoch: float,
    restarting: frozenset[str] = frozenset(),
) -> Budget | None:
    """The budget once the API has told the pod's grace: its deletion's, or a restart's.

    Deletion (A3, B1): `now` is the loop clock and `now_epoch` the wall clock at the same
    instant, so that the deletionTimestamp (wall clock) becomes a loop-clock deadline.
    Restart (no deletionTimestamp): the kubelet kills the `restarting` containers (those whose
    hooks came) with their liveness probe's grace, else the pod's spec grace (docs/budget.md),
    counted from the first hook. None when the API told nothing: the configured grace stands.
    """
    if deletion is None:
        return None
    if deletion.deadline_epoch is None:
        restart_grace = deletion.restart.seconds_for(restarting)
        if restart_grace is None:
            return None
        return plan_from_settings(
            settings,
            started_at=budget.started_at,
            grace_seconds=max(KUBELET_MIN_GRACE_SECONDS, restart_grace),
        )
    given = deletion.grace_seconds
    grace = max(KUBELET_MIN_GRACE_SECONDS, budget.grace_seconds if given is None else given)
    return plan_from_settings(
        settings,
        started_at=budget.started_at,
        grace_seconds=grace,
        deletion_deadline=now + (deletion.deadline_epoch - now_epoch),
    )
