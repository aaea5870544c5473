"""One flight of the shutdown, top to bottom: confirm, then the deletion or restart sequence."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.model.deadline import replan
from sidecar.model.quiet import QuietBounds
from sidecar.model.report import Outcome, Phase, Release, Result
from sidecar.model.rotation import pod_key
from sidecar.shutdown.confirm import Confirmation, confirm
from sidecar.shutdown.drain import drain
from sidecar.shutdown.journal import Journal
from sidecar.shutdown.quiesce import quiesce
from sidecar.shutdown.release import quit_proxy, wait_exit
from sidecar.shutdown.unroute import unroute

if TYPE_CHECKING:
    from sidecar.model.deadline import Budget
    from sidecar.model.flight import FlightKind
    from sidecar.model.plan import ReleaseGroup
    from sidecar.model.rotation import PodKey
    from sidecar.settings.schema import PhaseSettings
    from sidecar.shutdown.pod import Pod
    from sidecar.shutdown.protocols import ShutdownListener

log = structlog.get_logger(__name__)


class Flight:
    """One shutdown (or one container's restart), from the first hook to the last answer."""

    def __init__(
        self,
        pod: Pod,
        budget: Budget,
        listener: ShutdownListener | None,
        *,
        confirmation: Confirmation | None = None,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        self.pod = pod
        self.budget = budget
        self.journal = Journal(listener)
        #: What confirm said; given when this flight takes over from one that already asked.
        self.confirmation = confirmation
        #: deletion or restart, once confirm has said which.
        self.kind: FlightKind | None = None
        #: Whether a new hook joins this flight; false once its last answers are out.
        self.accepting = True
        #: Set when a later flight takes over this one's hooks (a deletion during a restart).
        self.handed_over = False
        self.finished = asyncio.Event()
        self._after = after

    @property
    def final(self) -> bool:
        """Whether the API confirmed a deletion: then no later flight can follow this one."""
        return self.confirmation is not None and self.confirmation.confirmed

    def hand_over(self) -> None:
        """A later flight answers this one's hooks; this one stops without answering them."""
        self.handed_over, self.accepting = True, False

    async def run(self) -> None:
        """The whole flight; every hook is answered by its latest time whatever happens."""
        if self._after is not None:  # the flight this one follows releases the sampler first
            await asyncio.wait({self._after})
        loop = asyncio.get_running_loop()
        settings, budget = self.pod.settings, self.budget
        log.info(
            "shutdown_started",
            grace_seconds=budget.grace_seconds,
            groups=[g.names for g in self.pod.groups],
        )
        self._answer_by(budget)
        try:
            async with asyncio.timeout_at(budget.hard_deadline) as scope:
                # 1. confirm: the token was checked by the server; the API says what it means.
                cap = settings.kubernetes.request_timeout_seconds + 0.5
                confirmation = await self._confirm(min(loop.time() + cap, budget.release_by[0]))
                budget = self._replan(confirmation)
                scope.reschedule(budget.hard_deadline)
                if confirmation.kind == "restart":
                    await self._restart()
                else:
                    await self._shutdown(confirmation)
        except TimeoutError:
            log.warning("shutdown_overran", phase=str(self.journal.current))
            overran = Result(Outcome.TIMED_OUT, {"reason": "hard deadline"})
            self.journal.record(self.journal.current or Phase.CONFIRM, loop.time(), overran)
        except Exception as e:  # a bug must not end the flight without its answers
            log.exception("flight_failed", phase=str(self.journal.current))
            failed = Result(Outcome.ERROR, {"error": f"{type(e).__name__}: {e}"})
            self.journal.record(self.journal.current or Phase.CONFIRM, loop.time(), failed)
        finally:
            releases = self._last_answers()
            try:
                await self.pod.monitor.stop()
            finally:
                if not self.handed_over:
                    self.journal.finish(self.budget, releases)
                self.finished.set()

    def _last_answers(self) -> tuple[Release, ...]:
        """Never leave a hook hanging, whatever went wrong; a hook after this starts anew."""
        if self.handed_over:
            return ()
        self.accepting = False
        self.pod.hooks.cancel_timers()
        if self.kind == "restart":
            self.pod.hooks.release_requested("end")
        else:
            self._release_through(self.pod.groups[-1], "end")
        return self.pod.hooks.releases

    async def _confirm(self, deadline: float) -> Confirmation:
        started = asyncio.get_running_loop().time()
        self.journal.current = Phase.CONFIRM
        confirmation = self.confirmation or await confirm(
            self.pod.api,
            uid=self.pod.settings.pod.uid,
            when_unconfirmed=self.pod.settings.kubernetes.when_unconfirmed,
            deadline=deadline,
        )
        self.journal.record(Phase.CONFIRM, started, confirmation.result)
        self.confirmation, self.kind = confirmation, confirmation.kind
        return confirmation

    def _replan(self, confirmation: Confirmation) -> Budget:
        """The pod's own grace replaces the configured one (A3, B1; a restart's: docs/budget.md)."""
        now = asyncio.get_running_loop().time()
        replanned = replan(
            self.budget,
            self.pod.settings,
            confirmation.deletion,
            now=now,
            now_epoch=time.time(),
            restarting=self.pod.hooks.requested,
        )
        if replanned is not None:
            self.budget = replanned
            self._answer_by(replanned)
            log.info(
                "budget_planned",
                grace_seconds=replanned.grace_seconds,
                remaining_seconds=round(replanned.remaining(now), 3),
                source="deletionGracePeriodSeconds"
                if confirmation.kind == "deletion"
                else "terminationGracePeriodSeconds of the restarting container",
            )
        return self.budget

    async def _restart(self) -> None:
        """One container restarts (no deletionTimestamp): its own drain, then its release only.

        No announce, no retire, no proxy release: the pod stays, and so does its registration.
        """
        loop = asyncio.get_running_loop()
        hooks, budget = self.pod.hooks, self.budget
        # Only the restarting containers are answered, at the latest when the budget ends.
        hooks.release_at([(budget.release_by[-1], tuple(sorted(hooks.requested)))])
        self.pod.monitor.start()
        ports = frozenset(
            p for c in self.pod.settings.containers if c.name in hooks.requested for p in c.ports
        )
        cap = self.pod.settings.phases.drain_max_seconds
        deadline = min(loop.time() + cap, budget.release_by[0])
        await self.journal.run(
            Phase.DRAIN, drain(self.pod.monitor, deadline=deadline, ports=ports), deadline
        )
        hooks.release_requested("restart")

    async def _shutdown(self, confirmation: Confirmation) -> None:
        """Steps 2 to 9 of README "How it works", each under its cap and its group's turn."""
        loop = asyncio.get_running_loop()
        pod, budget, journal = self.pod, self.budget, self.journal
        phases = pod.settings.phases
        apps = [g for g in pod.groups if not g.is_proxy]
        proxy_group = next((g for g in pod.groups if g.is_proxy), None)
        last_answer = budget.release_by[-1]
        # 2. announce runs beside unroute, quiesce and drain; it must end before release.
        first_release = budget.release_by[0]
        announcing = pod.registry_step(pod.announce, first_release, confirmed=self.final)
        announced = journal.run(Phase.ANNOUNCE, announcing, first_release, beside=True)
        announce = asyncio.create_task(announced, name="announce")
        try:
            pod.monitor.start()
            # 3. unroute: the control plane takes the pod out of rotation.
            deadline = budget.phase_deadline(loop.time(), phases.unroute_max_seconds)
            unrouted = unroute(
                None if confirmation.api_failed else pod.api,
                self._pod_key(confirmation),
                deadline=deadline,
                fallback_delay_seconds=phases.unroute_fallback_delay_seconds,
            )
            await journal.run(Phase.UNROUTE, unrouted, deadline)
            # 4. quiesce: the data plane caught up; pinned clients were told to leave.
            deadline = budget.phase_deadline(loop.time(), phases.quiesce_max_seconds)
            quiet = quiesce(
                pod.monitor,
                pod.proxy if pod.settings.envoy.drain_inbound and self._proxy_hooked() else None,
                deadline=deadline,
                bounds=quiet_bounds(phases, proxy_group, registries=bool(pod.settings.registries)),
            )
            await journal.run(Phase.QUIESCE, quiet, deadline)
            # 5. drain: in-flight requests finish.
            deadline = budget.phase_deadline(loop.time(), phases.drain_max_seconds)
            await journal.run(Phase.DRAIN, drain(pod.monitor, deadline=deadline), deadline)
            # 6. release apps, group by group; a later group goes once the earlier one exited.
            for group in apps:
                if group.index > 0:
                    previous = pod.groups[group.index - 1]
                    cap = phases.exit_wait_max_seconds
                    deadline = budget.phase_deadline(loop.time(), cap, group.index)
                    exited = self._exit(previous, deadline)
                    await journal.run(Phase.EXIT, exited, deadline, group=previous.index)
                self._release_through(group, "turn")
            await announce
        finally:
            announce.cancel()
        # 7. the apps exit; the proxy carries their last outbound calls until then.
        deadline = last_answer if proxy_group is not None else budget.hard_deadline
        if (proxy_group is not None and self._proxy_hooked()) or pod.retire is not None:
            await journal.run(Phase.EXIT, self._exit(apps[-1], deadline), deadline)
        # 8. retire before the proxy goes: registry calls may need the mesh.
        retiring = pod.registry_step(pod.retire, deadline, confirmed=self.final)
        await journal.run(Phase.RETIRE, retiring, deadline)
        # 9. release the proxy once its own in-flight requests are done, then quit it.
        if proxy_group is not None:
            cap = phases.proxy_drain_max_seconds
            drain_by = budget.phase_deadline(loop.time(), cap, proxy_group.index)
            released = self._release_proxy(proxy_group, drain_by)
            await journal.run(Phase.RELEASE_PROXY, released, last_answer)

    # -- steps of the sequence ----------------------------------------------------------------

    def _pod_key(self, confirmation: Confirmation) -> PodKey:
        identity, deletion = self.pod.settings.pod, confirmation.deletion
        uid = identity.uid or (deletion.uid if deletion else "")
        return pod_key(uid, [*identity.ips, *(deletion.ips if deletion else ())])

    async def _exit(self, group: ReleaseGroup, deadline: float) -> Result:
        native = self.pod.settings.server.mode == "native"
        return await wait_exit(
            self.pod.monitor,
            self.pod.processes,
            group,
            deadline=deadline,
            own_sigterm=self.pod.own_sigterm if native else None,
        )

    def _proxy_hooked(self) -> bool:
        """Whether the proxy may be acted on: its own hook came, or the API confirmed deletion.

        A hook for the app alone (a live pod, a leaked token, an API that cannot say) must not
        drain or quit the proxy: the endpoint only ever waits.
        """
        requested = self.pod.hooks.requested
        return self.final or any(
            c.role == "proxy" and c.name in requested for c in self.pod.settings.containers
        )

    async def _release_proxy(self, group: ReleaseGroup, drain_deadline: float) -> Result:
        if not self._proxy_hooked():
            self._release_through(group, "turn")
            untouched = "untouched: no proxy hook and no confirmed deletion"
            return Result(Outcome.SKIPPED, {"proxy": untouched})
        drained = await drain(self.pod.monitor, deadline=drain_deadline, ports=group.ports)
        self._release_through(group, "turn")
        detail: dict[str, Any] = {"proxy_in_flight": drained.outcome.value}
        proxy = self.pod.proxy
        if proxy is None or not self.pod.settings.envoy.quit_after_release:
            return Result(drained.outcome, detail)
        quit_result = await quit_proxy(proxy)
        detail.update(quit_result.detail)
        worst = drained.outcome if drained.outcome is not Outcome.OK else quit_result.outcome
        return Result(worst, detail)

    def _release_through(self, group: ReleaseGroup, reason: str) -> None:
        """Answer every group up to `group`, earlier groups first."""
        for earlier in self.pod.groups[: group.index + 1]:
            self.pod.hooks.release(earlier.names, reason)

    def _answer_by(self, budget: Budget) -> None:
        """Whatever happens, each group (and those before it) is answered at its latest time."""
        groups = self.pod.groups
        self.pod.hooks.release_at(
            (when, tuple(n for g in groups[: group.index + 1] for n in g.names))
            for group, when in zip(groups, budget.release_by, strict=True)
        )


def quiet_bounds(
    phases: PhaseSettings, proxy_group: ReleaseGroup | None, *, registries: bool = False
) -> QuietBounds:
    """Quiesce's settings; in a meshed pod callers arrive on the proxy's ports only.

    With registries the drain starts at once: their callers move when the registry tells them,
    not when a data plane drops the pod, and keep their pooled connections to it idle after
    they moved (those would hold quiesce for the idle hold), unless `Connection: close` ended
    each one after its answer.
    """
    entry = proxy_group.ports if proxy_group is not None and proxy_group.ports else None
    drain_after = 0.0 if registries else phases.proxy_drain_after_seconds
    return QuietBounds(
        min_window_seconds=phases.quiet_window_min_seconds,
        max_window_seconds=phases.quiet_window_seconds,
        quiesce_min_seconds=phases.quiesce_min_seconds,
        idle_hold_seconds=phases.idle_hold_seconds,
        entry_ports=entry,
        quiesce_max_seconds=phases.quiesce_max_seconds,
        proxy_drain_after_seconds=drain_after,
    )
