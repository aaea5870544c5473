"""The single-flight shutdown: phases in order under one budget, every hook answered in time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.model.deadline import Budget, plan_budget
from sidecar.model.plan import inbound_ports, release_groups
from sidecar.model.report import Outcome, Phase, PhaseRecord, Release, Result, summarise
from sidecar.model.rotation import pod_key
from sidecar.model.traffic import policy_for
from sidecar.shutdown.answers import HookAnswers
from sidecar.shutdown.confirm import Confirmation, confirm
from sidecar.shutdown.drain import drain
from sidecar.shutdown.observe import TrafficMonitor
from sidecar.shutdown.quiesce import quiesce
from sidecar.shutdown.release import quit_proxy, wait_exit
from sidecar.shutdown.unroute import unroute

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from sidecar.model.plan import ReleaseGroup
    from sidecar.model.rotation import PodKey
    from sidecar.settings import Settings
    from sidecar.shutdown.protocols import (
        ClusterApi,
        ProcessProbe,
        ProxyAdmin,
        RegistryPhase,
        ShutdownListener,
        TrafficSource,
    )

log = structlog.get_logger(__name__)

#: A phase that ignores its own deadline is cut this long after it.
_OVERRUN_SECONDS = 0.1


class Coordinator:
    """Runs the one shutdown of this pod; hooks join it and wait for their container's turn."""

    def __init__(
        self,
        settings: Settings,
        *,
        traffic: TrafficSource,
        processes: ProcessProbe,
        proxy: ProxyAdmin | None = None,
        api: ClusterApi | None = None,
        announce: RegistryPhase | None = None,
        retire: RegistryPhase | None = None,
        listener: ShutdownListener | None = None,
    ) -> None:
        self.settings = settings
        self.groups = release_groups(settings)
        self._proxy = proxy
        self._processes = processes
        self._api = api
        self._announce = announce
        self._retire = retire
        self._listener = listener
        self.monitor = TrafficMonitor(
            traffic,
            policy_for(
                inbound_ports(settings), settings.pod.host_ip, settings.traffic.ignore_peers
            ),
            settings.traffic.sample_interval_seconds,
        )
        self.answers = HookAnswers((c.name for c in settings.containers), listener)
        #: Set by the runtime when our own SIGTERM arrives (proof of app exit in native mode).
        self.own_sigterm = asyncio.Event()
        self.finished = asyncio.Event()
        self.budget: Budget | None = None
        self.current = "idle"
        self.records: list[PhaseRecord] = []
        self.summary: dict[str, Any] | None = None
        #: deletion or restart, once confirm has said which.
        self.kind: str | None = None
        #: Containers whose hooks came during this flight (a restart releases only those).
        self.requested: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._announce_task: asyncio.Task[Result] | None = None

    # -- what hooks and the runtime call ------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the shutdown has begun."""
        return self._task is not None

    def start(self, container: str | None = None) -> None:
        """Begin the shutdown once; later calls join it.

        After a container restart, a new hook starts a new flight: the pod lives on and may
        be deleted later.
        """
        if self._task is not None and self._task.done() and self.kind == "restart":
            self._reset()
        if container is not None:
            self.requested.add(container)
        if self._task is None:
            loop = asyncio.get_running_loop()
            self.budget = self._plan(loop.time(), self.settings.budget.grace_seconds, None)
            self._task = asyncio.create_task(self._run(self.budget), name="shutdown")

    def _plan(self, started_at: float, grace_seconds: float, deadline: float | None) -> Budget:
        b = self.settings.budget
        return plan_budget(
            started_at=started_at,
            grace_seconds=grace_seconds,
            group_count=len(self.groups),
            sigterm_reserve_seconds=b.sigterm_reserve_seconds,
            answer_margin_seconds=b.answer_margin_seconds,
            deletion_deadline=deadline,
        )

    def _reset(self) -> None:
        self.answers.reset()
        self.finished.clear()
        self.records, self.requested = [], set()
        self.summary, self.kind, self.budget, self._task = None, None, None, None
        self.current = "idle"

    def is_released(self, container: str) -> bool:
        """Whether that container's hook has been answered."""
        return self.answers.is_released(container)

    async def wait_released(self, container: str) -> None:
        """Return when that container's turn has come."""
        await self.answers.wait(container)

    @property
    def releases(self) -> list[Release]:
        """Every release of this flight, in order."""
        return self.answers.releases

    async def close(self) -> None:
        """Cancel a running shutdown (process exit) and stop sampling."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.monitor.stop()

    # -- the sequence -------------------------------------------------------------------------

    async def _run(self, budget: Budget) -> None:
        loop = asyncio.get_running_loop()
        log.info(
            "shutdown_started",
            grace_seconds=budget.grace_seconds,
            groups=[g.names for g in self.groups],
        )
        # Whatever happens below, each group is answered at its latest time, in plan order.
        self._schedule(budget)
        try:
            async with asyncio.timeout_at(budget.hard_deadline) as scope:
                # 1. confirm: the token was checked by the server; the API says what it means.
                cap = self.settings.kubernetes.request_timeout_seconds + 0.5
                confirmation = await self._confirm(min(loop.time() + cap, budget.release_by[0]))
                budget = self._replan(budget, confirmation)
                scope.reschedule(budget.hard_deadline)
                if confirmation.kind == "restart":
                    await self._restart(budget)
                else:
                    await self._shutdown(budget, confirmation)
        except TimeoutError:
            log.warning("shutdown_overran", phase=self.current)
            self._record(
                self.current, loop.time(), Result(Outcome.TIMED_OUT, {"reason": "hard deadline"})
            )
        finally:
            for timer in self._timers:
                timer.cancel()
            # Never leave a hook hanging, whatever went wrong above.
            if self.kind == "restart":
                self.answers.release(sorted(self.requested), "end")
            else:
                self._release_through(len(self.groups) - 1, "end")
            if self._announce_task is not None and not self._announce_task.done():
                self._announce_task.cancel()
            await self.monitor.stop()
        self._finish(budget)

    def _schedule(self, budget: Budget) -> None:
        for timer in self._timers:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_at(when, self._release_through, group.index, "deadline")
            for group, when in zip(self.groups, budget.release_by, strict=True)
        ]

    async def _confirm(self, deadline: float) -> Confirmation:
        started = asyncio.get_running_loop().time()
        self.current = Phase.CONFIRM
        confirmation = await confirm(
            self._api,
            uid=self.settings.pod.uid,
            when_unconfirmed=self.settings.kubernetes.when_unconfirmed,
            deadline=deadline,
        )
        self._record(Phase.CONFIRM, started, confirmation.result)
        self.kind = confirmation.kind
        return confirmation

    def _replan(self, budget: Budget, confirmation: Confirmation) -> Budget:
        """The pod's own deletion grace and deadline replace the configured grace (A3, B1)."""
        deletion = confirmation.deletion
        if deletion is None or not deletion.deleting:
            return budget
        loop = asyncio.get_running_loop()
        assert deletion.deadline_epoch is not None  # noqa: S101 - implied by deleting
        deadline = loop.time() + (deletion.deadline_epoch - time.time())
        # The kubelet never gives less than 1 s (B1), even after a forced delete.
        given = deletion.grace_seconds
        grace = max(1.0, budget.grace_seconds if given is None else given)
        replanned = self._plan(budget.started_at, grace, deadline)
        self.budget = replanned
        self._schedule(replanned)
        log.info(
            "budget_planned",
            grace_seconds=grace,
            remaining_seconds=round(replanned.remaining(loop.time()), 3),
            source="deletionGracePeriodSeconds",
        )
        return replanned

    async def _restart(self, budget: Budget) -> None:
        """One container restarts (no deletionTimestamp): its own drain, then its release only.

        No announce, no retire, no proxy release: the pod stays, and so does its registration.
        """
        loop = asyncio.get_running_loop()
        # Only the restarting containers are answered, at the latest when the budget ends.
        for timer in self._timers:
            timer.cancel()
        self._timers = [
            loop.call_at(
                budget.release_by[-1],
                lambda: self.answers.release(sorted(self.requested), "deadline"),
            )
        ]
        self.monitor.start()
        ports = frozenset(
            p for c in self.settings.containers if c.name in self.requested for p in c.ports
        )
        deadline = min(loop.time() + self.settings.phases.drain_max_seconds, budget.release_by[0])
        await self._phase(
            Phase.DRAIN, drain(self.monitor, deadline=deadline, ports=ports), deadline
        )
        self.answers.release(sorted(self.requested), "restart")

    async def _shutdown(self, budget: Budget, confirmation: Confirmation) -> None:
        """The whole plan of design.md section 1, steps 2-8."""
        loop = asyncio.get_running_loop()
        phases = self.settings.phases
        apps = [g for g in self.groups if not g.is_proxy]
        proxy_group = next((g for g in self.groups if g.is_proxy), None)
        last_answer = budget.release_by[-1]
        # 2. announce runs beside unroute, quiesce and drain; it must end before release.
        self._announce_task = announce_task = asyncio.create_task(
            self._phase(
                Phase.ANNOUNCE,
                _registry(self._announce, budget.release_by[0]),
                budget.release_by[0],
            ),
            name="announce",
        )
        self.monitor.start()
        # 3. unroute: the control plane takes the pod out of rotation.
        deadline = budget.phase_deadline(loop.time(), phases.unroute_max_seconds)
        await self._phase(
            Phase.UNROUTE,
            unroute(
                None if confirmation.api_failed else self._api,
                self._pod_key(confirmation),
                deadline=deadline,
                fallback_delay_seconds=phases.unroute_fallback_delay_seconds,
            ),
            deadline,
        )
        # 4. quiesce: the data plane caught up; pinned clients were told to leave.
        deadline = budget.phase_deadline(loop.time(), phases.quiesce_max_seconds)
        proxy = self._proxy if self.settings.envoy.drain_inbound else None
        await self._phase(
            Phase.QUIESCE,
            quiesce(
                self.monitor,
                proxy,
                deadline=deadline,
                window_seconds=phases.quiet_window_seconds,
                min_seconds=phases.quiesce_min_seconds,
            ),
            deadline,
        )
        # 5. drain: in-flight requests finish.
        deadline = budget.phase_deadline(loop.time(), phases.drain_max_seconds)
        await self._phase(Phase.DRAIN, drain(self.monitor, deadline=deadline), deadline)
        # 6. release apps, group by group; a later group goes once the earlier one exited.
        for group in apps:
            if group.index > 0:
                previous = self.groups[group.index - 1]
                deadline = budget.phase_deadline(
                    loop.time(), phases.exit_wait_max_seconds, group.index
                )
                await self._phase(
                    f"exit:{previous.index}", self._exit(previous, deadline), deadline
                )
            self._release_through(group.index, "turn")
        await announce_task
        # 7. the apps exit; the proxy carries their last outbound calls until then.
        deadline = last_answer if proxy_group is not None else budget.hard_deadline
        if proxy_group is not None or self._retire is not None:
            await self._phase("exit", self._exit(apps[-1], deadline), deadline)
        # 8. retire before the proxy goes: registry calls may need the mesh.
        await self._phase(Phase.RETIRE, _registry(self._retire, deadline), deadline)
        # 9. release the proxy once its own in-flight requests are done, then quit it.
        if proxy_group is not None:
            await self._phase(
                Phase.RELEASE_PROXY,
                self._release_proxy(
                    proxy_group,
                    budget.phase_deadline(
                        loop.time(), phases.proxy_drain_max_seconds, proxy_group.index
                    ),
                ),
                last_answer,
            )

    def _pod_key(self, confirmation: Confirmation) -> PodKey:
        pod, deletion = self.settings.pod, confirmation.deletion
        uid = pod.uid or (deletion.uid if deletion else "")
        return pod_key(uid, [*pod.ips, *(deletion.ips if deletion else ())])

    async def _exit(self, group: ReleaseGroup, deadline: float) -> Result:
        native = self.settings.server.mode == "native"
        return await wait_exit(
            self.monitor,
            self._processes,
            group,
            deadline=deadline,
            own_sigterm=self.own_sigterm if native else None,
        )

    async def _release_proxy(self, group: ReleaseGroup, drain_deadline: float) -> Result:
        drained = await drain(self.monitor, deadline=drain_deadline, ports=group.ports)
        self._release_through(group.index, "turn")
        detail: dict[str, Any] = {"proxy_in_flight": drained.outcome.value}
        if self._proxy is None or not self.settings.envoy.quit_after_release:
            return Result(drained.outcome, detail)
        quit_result = await quit_proxy(self._proxy)
        detail.update(quit_result.detail)
        worst = drained.outcome if drained.outcome is not Outcome.OK else quit_result.outcome
        return Result(worst, detail)

    # -- bookkeeping --------------------------------------------------------------------------

    async def _phase(self, name: str, work: Coroutine[Any, Any, Result], deadline: float) -> Result:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.current = name
        log.info("phase_started", phase=name)
        try:
            async with asyncio.timeout_at(deadline + _OVERRUN_SECONDS):
                result = await work
        except TimeoutError:
            result = Result(Outcome.TIMED_OUT, {"reason": "phase overran its deadline"})
        except Exception as e:  # a bug or an adapter failure must not stop the sequence
            log.exception("phase_failed", phase=name)
            result = Result(Outcome.ERROR, {"error": f"{type(e).__name__}: {e}"})
        self._record(name, started, result)
        return result

    def _record(self, name: str, started: float, result: Result) -> None:
        record = PhaseRecord(
            str(name), started, asyncio.get_running_loop().time(), result.outcome, result.detail
        )
        self.records.append(record)
        log.info(
            "phase_finished",
            phase=name,
            outcome=str(result.outcome),
            duration_seconds=round(record.duration, 3),
            **result.detail,
        )
        if self._listener is not None:
            self._listener.phase_finished(record)

    def _release_through(self, index: int, reason: str) -> None:
        """Answer every group up to `index`, earlier groups first."""
        for group in self.groups[: index + 1]:
            self.answers.release(group.names, reason)

    def _finish(self, budget: Budget) -> None:
        now = asyncio.get_running_loop().time()
        self.current = "finished"
        self.summary = summarise(
            started_at=budget.started_at,
            ended_at=now,
            hard_deadline=budget.hard_deadline,
            phases=self.records,
            releases=self.releases,
        )
        log.info("shutdown_finished", **self.summary)
        if self._listener is not None:
            self._listener.shutdown_finished(self.summary)
        self.finished.set()


async def _registry(phase: RegistryPhase | None, deadline: float) -> Result:
    if phase is None:
        return Result(Outcome.SKIPPED, {"reason": "no registry configured"})
    return await phase.run(deadline)
