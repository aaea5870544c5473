"""What every flight of this pod acts on and observes, built once by the coordinator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.model.report import Outcome, Result

if TYPE_CHECKING:
    from sidecar.model.plan import ReleaseGroup
    from sidecar.settings import Settings
    from sidecar.shutdown.hooks import HookLedger
    from sidecar.shutdown.observe import TrafficMonitor
    from sidecar.shutdown.protocols import ClusterApi, ProcessProbe, ProxyAdmin, RegistryPhase


@dataclass(frozen=True)
class Pod:
    """The pod's settings, release groups, hook ledger, sampler and adapters."""

    settings: Settings
    groups: tuple[ReleaseGroup, ...]
    hooks: HookLedger
    monitor: TrafficMonitor
    processes: ProcessProbe
    #: Set when our own SIGTERM arrives (proof of the apps' exit in native mode).
    own_sigterm: asyncio.Event
    proxy: ProxyAdmin | None
    api: ClusterApi | None
    announce: RegistryPhase | None
    retire: RegistryPhase | None

    async def registry_step(
        self, phase: RegistryPhase | None, deadline: float, *, confirmed: bool
    ) -> Result:
        """Announce or retire, only on evidence of a deletion: the API's, or every hook's.

        A registration is the live pod's traffic; one hook the API could not confirm (a leaked
        token, a restart taken for a deletion) must not take it away: the endpoint only waits.
        """
        if phase is None:
            return Result(Outcome.SKIPPED, {"reason": "no registry configured"})
        if not confirmed:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.hooks.wait_all_requested()
            except TimeoutError:
                reason = "no confirmed deletion, and not every container's hook came"
                return Result(Outcome.SKIPPED, {"reason": reason})
        return await phase.run(deadline)
