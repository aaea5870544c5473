"""The agent's composition root: build adapters, serve hooks, and stop only when it is safe."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.adapters.envoy import EnvoyAdmin
from sidecar.adapters.kube import KubeApi
from sidecar.adapters.processes import ProcessProbe
from sidecar.adapters.traffic.netns import NetnsTrafficSource
from sidecar.agent.events import EventPoster, FanOut
from sidecar.agent.metrics import Metrics
from sidecar.agent.server import start_server
from sidecar.errors import AgentStopError
from sidecar.model.plan import inbound_ports
from sidecar.shutdown.coordinator import Coordinator

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiohttp import web

    from sidecar.adapters.http_action import HttpAction
    from sidecar.settings import Settings
    from sidecar.shutdown.registries import Announce, Retire

log = structlog.get_logger(__name__)

#: After the plan ends, how long the last answers get to reach the kubelet.
_FLUSH_SECONDS = 1.0
#: Each stop stage gets this long (the server's own flush included), so the exit is bounded.
_STOP_STAGE_SECONDS = 2 * _FLUSH_SECONDS


@dataclass
class Agent:
    """Everything one agent process holds."""

    settings: Settings
    coordinator: Coordinator
    metrics: Metrics
    runner: web.AppRunner
    traffic: NetnsTrafficSource
    envoy: EnvoyAdmin | None
    kube: KubeApi | None
    events: EventPoster | None
    close_registries: Callable[[], Awaitable[None]] | None


@dataclass(frozen=True)
class RegistryPhases:
    """Announce and retire as configured; None where nothing is configured for them."""

    announce: Announce | None
    retire: Retire | None
    #: The guarantee webhook's preparation step, beside announce (`POST /prepare`).
    prepare: HttpAction | None
    #: Closes every client the registries and actions opened (none while idle).
    close: Callable[[], Awaitable[None]] | None


def registry_phases(settings: Settings) -> RegistryPhases:
    """Render every registry and action for this pod (raises ConfigError naming the key).

    Retire stays None when nothing is configured: with a retire step, the sequence waits for
    the apps' exit even in a pod without a proxy.
    """
    wanted = (settings.registries, settings.offline_calls, settings.config_cleanup)
    if not any(wanted) and not settings.prepare_action.url:
        return RegistryPhases(None, None, None, None)
    # Only pods that use registries pay for their modules at start.
    from sidecar.adapters.http_action import HttpClient, http_actions  # noqa: PLC0415
    from sidecar.adapters.registries import build_registries, own_sessions  # noqa: PLC0415
    from sidecar.model.http_action import identity_of  # noqa: PLC0415
    from sidecar.shutdown.registries import Announce, Retire  # noqa: PLC0415

    pod, http = identity_of(settings.pod), HttpClient()
    registries = build_registries(settings.registries, pod, http)
    offline = http_actions(settings.offline_calls, pod, http, "offline_calls")
    cleanup = http_actions(settings.config_cleanup, pod, http, "config_cleanup")
    prepare = settings.prepare_action
    preparing = http_actions([prepare], pod, http, "prepare_action") if prepare.url else []
    retry = settings.registry_retry

    async def close() -> None:
        await http.close()
        for backend in own_sessions(registries):
            await backend.close()

    return RegistryPhases(
        Announce(registries, offline, backoff=retry) if registries or offline else None,
        Retire(registries, cleanup, backoff=retry) if registries or cleanup else None,
        preparing[0] if preparing else None,
        close,
    )


async def start_agent(settings: Settings) -> Agent:
    """Build the agent and start serving; no connection to anything else is made here."""
    phases = registry_phases(settings)
    traffic = NetnsTrafficSource(inbound_ports(settings), settings.traffic.source)
    envoy = (
        EnvoyAdmin(
            settings.envoy.admin_url,
            pilot_agent_url=settings.envoy.pilot_agent_url,
            timeout_seconds=settings.envoy.request_timeout_seconds,
        )
        if settings.envoy.admin_url
        else None
    )
    metrics = Metrics()
    # The API client is built here but connects only when the first hook comes.
    kube = KubeApi(settings.kubernetes, settings.pod) if settings.kubernetes.enabled else None
    events = EventPoster(kube, settings) if kube and settings.kubernetes.events else None
    coordinator = Coordinator(
        settings,
        traffic=traffic,
        processes=ProcessProbe(),
        proxy=envoy,
        api=kube,
        announce=phases.announce,
        retire=phases.retire,
        prepare_action=phases.prepare,
        listener=FanOut(metrics, events) if events else metrics,
    )
    metrics.watch(coordinator.status, settings.budget.grace_seconds)
    runner = await start_server(settings, coordinator, metrics, flush_seconds=_FLUSH_SECONDS)
    log.info(
        "agent_ready", port=settings.server.port, containers=[c.name for c in settings.containers]
    )
    return Agent(settings, coordinator, metrics, runner, traffic, envoy, kube, events, phases.close)


async def stop_agent(agent: Agent) -> None:
    """Close the server and adapters, each stage on its own; raise naming every stage that failed.

    A failing stage must not keep the later ones from closing, and must not pass silently.
    """

    async def close_traffic() -> None:
        agent.traffic.close()

    stages: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("server", agent.runner.cleanup),
        ("coordinator", agent.coordinator.close),
        ("traffic", close_traffic),
    ]
    if agent.events is not None:
        events = agent.events
        stages.append(("events", lambda: events.flush(_FLUSH_SECONDS)))
    if agent.kube is not None:
        stages.append(("kubernetes", agent.kube.close))
    if agent.envoy is not None:
        stages.append(("envoy", agent.envoy.close))
    if agent.close_registries is not None:
        stages.append(("registries", agent.close_registries))
    failed: list[str] = []
    for name, stage in stages:
        try:
            async with asyncio.timeout(_STOP_STAGE_SECONDS):
                await stage()
        except TimeoutError:
            log.warning("stop_stage_failed", stage=name, error="no end in time")
            failed.append(f"{name}: did not end within {_STOP_STAGE_SECONDS} s")
        except Exception as e:
            log.exception("stop_stage_failed", stage=name)
            failed.append(f"{name}: {type(e).__name__}: {e}")
    if failed:
        raise AgentStopError(failed)


async def wait_until_safe_to_exit(coordinator: Coordinator, linger_seconds: float) -> str:
    """After our SIGTERM: finish the plan, and return once every hook is answered or time is up.

    An agent that exits on SIGTERM turns every held hook into "connection refused", and the
    pod into one with no hooks at all, so SIGTERM only starts this wait.
    """
    loop = asyncio.get_running_loop()
    if not coordinator.status().started:
        # Hooks and our SIGTERM are sent at about the same moment; give the hooks a chance.
        try:
            async with asyncio.timeout(linger_seconds):
                await coordinator.wait_first_hook()
        except TimeoutError:
            return "no_hook"
    while True:
        # Always the current plan: confirm may replace the first budget with the pod's own.
        budget = coordinator.status().budget
        if budget is None:  # a hook was seen but refused to start a shutdown
            return "no_shutdown"
        try:
            async with asyncio.timeout_at(budget.hard_deadline + _FLUSH_SECONDS):
                await coordinator.wait_finished()
        except TimeoutError:
            if coordinator.status().budget == budget:
                return "deadline"
            continue
        return "finished" if loop.time() <= budget.hard_deadline else "deadline"


async def exit_when_safe(coordinator: Coordinator, linger_seconds: float) -> str:
    """The exit wait, supervised: a bug in it must not end the process while hooks are held.

    On an error, keep serving until the current plan's deadline has passed (and its answers
    had their time to go out), then let the agent exit.
    """
    try:
        return await wait_until_safe_to_exit(coordinator, linger_seconds)
    except Exception:
        log.exception("exit_wait_failed")
    budget = coordinator.status().budget
    if budget is not None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, budget.hard_deadline + _FLUSH_SECONDS - loop.time()))
    return "exit_wait_failed"


def _log_loop_error(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    log.error(
        "unhandled_error",
        message=context.get("message", ""),
        error=f"{type(error).__name__}: {error}" if error else None,
    )


async def run(settings: Settings) -> None:
    """Serve until SIGTERM, then until it is safe to exit; SIGINT stops at once (local runs)."""
    loop = asyncio.get_running_loop()
    sigterm = asyncio.Event()
    sigint = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, sigterm.set)
    loop.add_signal_handler(signal.SIGINT, sigint.set)
    # An error nobody awaited is logged as one line, never a crash while hooks are held.
    loop.set_exception_handler(_log_loop_error)
    # Every line the agent logs names its pod: one JSON stream may carry many pods' lines.
    structlog.contextvars.bind_contextvars(pod=settings.pod.name, namespace=settings.pod.namespace)
    agent = await start_agent(settings)
    try:
        waiters = {asyncio.ensure_future(sigterm.wait()), asyncio.ensure_future(sigint.wait())}
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        if sigterm.is_set():
            agent.coordinator.notice_own_sigterm()
            log.info("sigterm_received", shutdown_started=agent.coordinator.status().started)
            linger = settings.server.idle_sigterm_linger_seconds
            exit_task = asyncio.ensure_future(exit_when_safe(agent.coordinator, linger))
            interrupt = asyncio.ensure_future(sigint.wait())
            await asyncio.wait({exit_task, interrupt}, return_when=asyncio.FIRST_COMPLETED)
            interrupt.cancel()
            reason = exit_task.result() if exit_task.done() else "interrupted"
            exit_task.cancel()
            log.info("agent_exiting", reason=reason)
        else:
            log.info("agent_exiting", reason="interrupted")
    finally:
        await stop_agent(agent)
