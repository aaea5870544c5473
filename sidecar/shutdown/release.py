"""Phases around releases: see a released group exit, then let the proxy go and tell it to quit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sidecar.model.report import Outcome, Result
from sidecar.model.traffic import group_exited

if TYPE_CHECKING:
    from sidecar.model.plan import ReleaseGroup
    from sidecar.shutdown.observe import TrafficMonitor
    from sidecar.shutdown.protocols import ProcessProbe, ProxyAdmin


async def wait_exit(
    monitor: TrafficMonitor,
    processes: ProcessProbe,
    group: ReleaseGroup,
    *,
    deadline: float,
    own_sigterm: asyncio.Event | None,
) -> Result:
    """Wait until the group's listening ports are gone (and its processes, when visible).

    In native-sidecar mode our own SIGTERM arrives only once every main container has exited
    (KEP-753), so it is proof too. With nothing to observe, wait out the reserve: releasing the
    proxy early would cut the app's last outbound calls.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    observable = bool(group.ports or group.process_names)
    while True:
        if own_sigterm is not None and own_sigterm.is_set():
            return Result(
                Outcome.OK,
                {"seen_by": "own_sigterm", "waited_seconds": round(loop.time() - started, 3)},
            )
        if observable and monitor.latest is not None:
            running = await _running(processes, group.process_names, deadline)
            if group_exited(monitor.latest, group.ports, running):
                return Result(
                    Outcome.OK,
                    {
                        "seen_by": "processes" if running is not None else "listening_sockets",
                        "waited_seconds": round(loop.time() - started, 3),
                    },
                )
        if loop.time() >= deadline or not await _next(monitor, own_sigterm, deadline):
            reason = (
                "still running" if observable else "exit not observable (no ports or process names)"
            )
            outcome = Outcome.TIMED_OUT if observable else Outcome.DEGRADED
            return Result(
                outcome, {"reason": reason, "waited_seconds": round(loop.time() - started, 3)}
            )


async def _running(processes: ProcessProbe, names: frozenset[str], deadline: float) -> bool | None:
    """Ask the probe, bounded by the deadline; no answer means it cannot tell (None)."""
    try:
        async with asyncio.timeout_at(deadline):
            return await processes.running(names)
    except TimeoutError:
        return None


async def _next(
    monitor: TrafficMonitor, own_sigterm: asyncio.Event | None, deadline: float
) -> bool:
    """Wait for a new sample or our SIGTERM, whichever comes first; False at the deadline."""
    waiters = [asyncio.ensure_future(monitor.next_sample(deadline))]
    if own_sigterm is not None:
        waiters.append(asyncio.ensure_future(own_sigterm.wait()))
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return any(w.result() is not False for w in done if not w.cancelled())


async def quit_proxy(proxy: ProxyAdmin) -> Result:
    """Ask Envoy (and the mesh agent, if any) to exit now that its hook is answered."""
    detail: dict[str, object] = {}
    outcome = Outcome.OK
    for name, call in (("envoy_quit", proxy.quit), ("pilot_agent_quit", proxy.quit_pilot_agent)):
        try:
            answer = await call()
            detail[name] = "skipped" if answer is False else "sent"
        except Exception as e:
            detail[name] = f"failed: {e}"
            outcome = Outcome.DEGRADED
    return Result(outcome, detail)
