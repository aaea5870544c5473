"""The coordinator: the one entry point hooks and the runtime use; it runs one flight at a time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from sidecar.model.deadline import plan_from_settings
from sidecar.model.flight import FlightState, FlightStatus
from sidecar.model.plan import inbound_ports, release_groups
from sidecar.model.traffic import policy_for
from sidecar.shutdown.confirm import Confirmation, confirm
from sidecar.shutdown.flight import Flight
from sidecar.shutdown.hooks import HookLedger
from sidecar.shutdown.observe import TrafficMonitor
from sidecar.shutdown.pod import Pod
from sidecar.shutdown.prepare import Preparation

if TYPE_CHECKING:
    from sidecar.settings import Settings
    from sidecar.shutdown.prepare import Prepared
    from sidecar.shutdown.protocols import (
        ClusterApi,
        ProcessProbe,
        ProxyAdmin,
        RegistryPhase,
        ShutdownListener,
        TrafficSource,
    )
    from sidecar.shutdown.registries import Action


class Coordinator:
    """Runs the one shutdown of this pod; hooks join it and wait for their container's turn.

    Readers get an immutable `FlightStatus`; nothing outside reads the flight's fields.
    """

    def __init__(  # noqa: PLR0913  # keyword-only adapters, each optional but two, named by the caller
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
        prepare_action: Action | None = None,
    ) -> None:
        self._settings = settings
        #: POST /prepare: announce and the preparation action, before a deletion is allowed.
        self._preparation = Preparation(announce, prepare_action)
        self._listener = listener
        monitor = TrafficMonitor(
            traffic,
            policy_for(
                inbound_ports(settings),
                settings.pod.host_ip,
                settings.traffic.ignore_peers,
                node_is_traffic=settings.traffic.node_is_traffic,
            ),
            settings.traffic.sample_interval_seconds,
        )
        self._pod = Pod(
            settings=settings,
            groups=release_groups(settings),
            hooks=HookLedger((c.name for c in settings.containers), listener),
            monitor=monitor,
            processes=processes,
            own_sigterm=asyncio.Event(),
            proxy=proxy,
            api=api,
            announce=announce,
            retire=retire,
        )
        self._flight: Flight | None = None
        self._task: asyncio.Task[None] | None = None
        #: A re-confirm in progress (a hook came during a restart flight).
        self._asking: asyncio.Task[None] | None = None

    def start(self, container: str | None = None) -> None:
        """Begin the shutdown once; later calls join it.

        Only a deletion the API confirmed is final. After a restart flight, or one the API could
        not confirm, a new hook starts a new flight: the pod lives on, or may still be deleted.
        While a restart flight runs, a new hook asks the API again, and a deletion takes over.
        """
        flight = self._flight
        if flight is None:
            self._begin()
        elif not flight.accepting:
            if flight.final:
                return  # every hook was answered, and stays so
            self._begin(after=self._task)
        elif flight.kind == "restart":
            self._reconfirm(flight)
        if container is not None:
            self._pod.hooks.request(container)

    def _begin(
        self, *, after: asyncio.Task[None] | None = None, confirmation: Confirmation | None = None
    ) -> None:
        self._pod.hooks.reset()
        now = asyncio.get_running_loop().time()
        budget = plan_from_settings(self._settings, started_at=now)
        flight = Flight(self._pod, budget, self._listener, confirmation=confirmation, after=after)
        self._flight = flight
        self._task = asyncio.create_task(flight.run(), name="shutdown")

    def _reconfirm(self, flight: Flight) -> None:
        """Ask the API again, once at a time: a hook during a restart may be the pod's deletion."""
        if self._pod.api is None or (self._asking is not None and not self._asking.done()):
            return
        self._asking = asyncio.create_task(self._take_over_if_deleted(flight), name="reconfirm")

    async def _take_over_if_deleted(self, flight: Flight) -> None:
        loop = asyncio.get_running_loop()
        cap = self._settings.kubernetes.request_timeout_seconds + 0.5
        confirmation = await confirm(
            self._pod.api,
            uid=self._settings.pod.uid,
            when_unconfirmed="restart",  # an API that cannot say changes nothing
            deadline=loop.time() + cap,
        )
        if not confirmation.confirmed or flight is not self._flight or not flight.accepting:
            return
        requested = self._pod.hooks.requested
        flight.hand_over()
        if self._task is not None:
            self._task.cancel()
        self._begin(after=self._task, confirmation=confirmation)
        for name in requested:
            self._pod.hooks.request(name)

    async def hook(self, container: str) -> None:
        """Serve one authorised hook for a known container: join the flight, wait for its turn."""
        with self._pod.hooks.holding(container):
            self.start(container)
            await self._pod.hooks.wait(container)

    async def prepare(self) -> Prepared:
        """Prepare for a deletion (announce, the preparation action); never answers a hook."""
        return await self._preparation.prepare()

    def reject_hook(self, reason: str) -> None:
        """Count a refused hook."""
        self._pod.hooks.reject(reason)

    def knows(self, container: str) -> bool:
        """Whether the plan has a container of that name."""
        return self._pod.hooks.knows(container)

    def is_released(self, container: str) -> bool:
        """Whether that container's hook has been answered."""
        return self._pod.hooks.is_released(container)

    async def wait_released(self, container: str) -> None:
        """Return when that container's turn has come."""
        await self._pod.hooks.wait(container)

    def notice_own_sigterm(self) -> None:
        """Our own SIGTERM came: in native mode, the apps have exited."""
        self._pod.own_sigterm.set()

    async def wait_first_hook(self) -> None:
        """Return once an authorised hook for a known container has come."""
        await self._pod.hooks.wait_first_hook()

    async def wait_finished(self) -> None:
        """Return once the flight has finished and no hook still waits for its answer."""
        if self._flight is not None:
            await self._flight.finished.wait()
        await self._pod.hooks.wait_none_held()

    def status(self) -> FlightStatus:
        """An immutable snapshot of the flight."""
        flight, hooks = self._flight, self._pod.hooks
        if flight is None:
            return FlightStatus(
                state=FlightState.IDLE,
                phase=None,
                kind=None,
                budget=None,
                records=(),
                releases=(),
                hooks=hooks.counts(),
                traffic=self._pod.monitor.snapshot(),
                summary=None,
            )
        finished = flight.finished.is_set()
        return FlightStatus(
            state=FlightState.FINISHED if finished else FlightState.RUNNING,
            phase=flight.journal.current,
            kind=flight.kind,
            budget=flight.budget,
            records=tuple(flight.journal.records),
            releases=hooks.releases,
            hooks=hooks.counts(),
            traffic=self._pod.monitor.snapshot(),
            summary=flight.journal.summary,
        )

    async def close(self) -> None:
        """Cancel a running flight (process exit) and stop sampling."""
        for task in (self._asking, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._preparation.close()
        await self._pod.monitor.stop()
