"""Hooks re-delivered by a restarted kubelet join the running shutdown; nothing is done twice.

Pins docs/faults.md "The kubelet restarts mid-termination" (kubernetes-behaviour B16): the
whole agent against the API stand-in, a fake Envoy admin and a generic HTTP registry. The
kubelet's first hooks are cut when it restarts and then come again; they join the same
flight with the same deadline, each is answered at its container's turn (at once when that
turn has passed), and Envoy's drain and quit, the registry's mark-down and deregister, and
the Events are each done once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.agent.runtime import Agent, start_agent, stop_agent
from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from sidecar.drill.procs import free_port
from sidecar.settings import TOKEN_HEADER, from_mapping

TOKEN = "redelivery-token-0123456789"
POD = "web-1"
#: The hook ledger has no event for "n hooks held", so the in-process status is read this often.
STATUS_INTERVAL_SECONDS = 0.02
#: An answer "at once": well under the quiet window and the traffic sample interval.
AT_ONCE_SECONDS = 0.1


@dataclass
class Recorder:
    """A fake remote (Envoy admin, registry) that answers 200 and records (method, path)."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    #: Set at every call, for waiting on the first one.
    called: asyncio.Event = field(default_factory=asyncio.Event)
    #: What a GET answers (the registry's read-back: absent once deregistered).
    get_status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        self.called.set()
        if request.method == "DELETE":
            self.get_status = 404
        return web.Response(status=self.get_status if request.method == "GET" else 200)

    def count(self, method: str, path: str) -> int:
        return self.calls.count((method, path))


@dataclass
class Pod:
    agent: Agent
    cp: ControlPlane
    envoy: Recorder
    registry: Recorder
    #: The app's listening socket: open while the app runs, closed when it exits.
    app_listener: socket.socket


async def serve(recorder: Recorder) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def pod(tmp_path: Path) -> AsyncIterator[Pod]:
    cp, envoy, registry = ControlPlane(), Recorder(), Recorder()
    runners: list[web.AppRunner] = []
    agent: Agent | None = None
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        await cp.start()
        cp.create("services", service_object("web"))
        uid = cp.create("pods", pod_object(POD, ("127.0.0.1",), grace_seconds=8))["metadata"]["uid"]
        # From here on the slice controller acts only when the test says (see `unroute`).
        cp.controller_delay_seconds = 600
        envoy_runner, envoy_url = await serve(envoy)
        registry_runner, registry_url = await serve(registry)
        runners += [envoy_runner, registry_runner]
        instance = f"{registry_url}/apps/WEB/{{pod.name}}"
        settings = {
            "containers": [
                {"name": "app", "ports": [listener.getsockname()[1]]},
                {"name": "proxy", "role": "proxy", "ports": [free_port()]},
            ],
            "server": {"host": "127.0.0.1", "port": free_port()},
            "budget": {"grace_seconds": 30, "sigterm_reserve_seconds": 1},
            "phases": {"quiet_window_seconds": 0.2, "quiesce_min_seconds": 0.1},
            "traffic": {"sample_interval_seconds": 0.05},
            "envoy": {"admin_url": envoy_url},
            "pod": {"name": POD, "namespace": NAMESPACE, "uid": uid},
            "kubernetes": {
                "kubeconfig": str(cp.write_kubeconfig(tmp_path / "kubeconfig")),
                "request_timeout_seconds": 0.5,
            },
            "registries": [
                {
                    "kind": "http",
                    "name": "eureka",
                    "mark_down": {"method": "PUT", "url": f"{instance}/status?value=DOWN"},
                    "deregister": {"method": "DELETE", "url": instance},
                    "verify": {"url": instance},
                }
            ],
        }
        agent = await start_agent(from_mapping(settings, {"SHUTDOWN_COORDINATOR_TOKEN": TOKEN}))
        yield Pod(agent, cp, envoy, registry, listener)
    finally:
        listener.close()
        if agent is not None:
            await stop_agent(agent)
        for runner in runners:
            await runner.cleanup()
        await cp.stop()


class KubeletRun:
    """One life of the kubelet process: its hooks, on its own client (cut when it dies)."""

    def __init__(self, agent: Agent) -> None:
        self._base = f"http://127.0.0.1:{agent.settings.server.port}/prestop"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self.hooks: dict[str, asyncio.Task[dict[str, Any]]] = {}

    def deliver(self, *containers: str) -> None:
        for name in containers:
            self.hooks[name] = asyncio.create_task(self._get(name), name=f"hook-{name}")

    async def _get(self, container: str) -> dict[str, Any]:
        headers = {TOKEN_HEADER: TOKEN}
        async with self._session.get(f"{self._base}/{container}", headers=headers) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def answer(self, container: str, timeout_seconds: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_seconds):
            return await self.hooks[container]

    async def die(self) -> None:
        """The kubelet process goes away: its requests end, its connections close."""
        for task in self.hooks.values():
            task.cancel()
        await asyncio.gather(*self.hooks.values(), return_exceptions=True)
        await self._session.close()


async def until(agent: Agent, what: str, condition: Callable[[Any], bool]) -> None:
    """Return once the agent's status satisfies `condition`; fail naming `what` after 10 s."""
    try:
        async with asyncio.timeout(10):
            while not condition(agent.coordinator.status()):
                await asyncio.sleep(STATUS_INTERVAL_SECONDS)
    except TimeoutError:
        pytest.fail(f"the agent never reached: {what}; status {agent.coordinator.status()}")


async def answered_at_once(agent: Agent, container: str) -> None:
    """A restarted kubelet delivers the hook again: it returns at once, waiting for nothing."""
    loop = asyncio.get_running_loop()
    kubelet = KubeletRun(agent)
    try:
        kubelet.deliver(container)
        started = loop.time()
        answer = await kubelet.answer(container)
        assert loop.time() - started < AT_ONCE_SECONDS
        assert answer["released"] is True
        assert answer["waited_seconds"] < AT_ONCE_SECONDS
    finally:
        await kubelet.die()


def assert_done_once(pod: Pod) -> None:
    """Envoy drained and quit once, the registry marked down and deregistered once."""
    assert pod.envoy.count("POST", "/drain_listeners") == 1
    assert pod.envoy.count("POST", "/quitquitquit") == 1
    assert pod.registry.count("PUT", "/apps/WEB/web-1/status") == 1
    assert pod.registry.count("DELETE", "/apps/WEB/web-1") == 1


def unroute(cp: ControlPlane) -> None:
    """The slice controller now writes the deleted pod's endpoint as not ready (D6)."""
    cp.controller_delay_seconds = 0
    cp.set_ready(NAMESPACE, POD, ready=False)


async def test_redelivered_hooks_join_the_same_flight_and_nothing_is_done_twice(pod: Pod) -> None:
    agent = pod.agent
    pod.cp.delete_pod(NAMESPACE, POD)
    first = KubeletRun(agent)
    first.deliver("app", "proxy")
    await until(
        agent, "both hooks held, deletion confirmed", lambda s: s.hooks.held == 2 and s.kind
    )
    before = agent.coordinator.status()
    assert before.kind == "deletion"
    assert before.budget is not None
    assert before.budget.grace_seconds == 8  # the pod's own grace (B1)
    # The kubelet restarts mid-termination: its hooks are cut, then delivered again (B16).
    await first.die()
    second = KubeletRun(agent)
    try:
        second.deliver("app", "proxy")
        await until(
            agent,
            "the second delivery received",
            lambda s: s.hooks.received == {"app": 2, "proxy": 2},
        )
        during = agent.coordinator.status()
        # The same flight: same start, same deadline, nothing released yet.
        assert during.budget == before.budget
        assert during.releases == ()
        assert not second.hooks["app"].done()
        assert not second.hooks["proxy"].done()

        # The endpoint goes not ready: the app's turn comes, and its re-delivered hook returns.
        unroute(pod.cp)
        app_answer = await second.answer("app")
        assert app_answer["released"] is True
        assert agent.coordinator.is_released("app")
        # The proxy waits for the app's exit: its listening socket is still open.
        assert not second.hooks["proxy"].done()
        assert [(r.container, r.reason) for r in agent.coordinator.status().releases] == [
            ("app", "turn")
        ]

        # Delivered again once the app's turn has passed: answered at once.
        await answered_at_once(agent, "app")
        assert not second.hooks["proxy"].done()

        # The app exits: the proxy's re-delivered hook is answered at its turn.
        pod.app_listener.close()
        proxy_answer = await second.answer("proxy")
        assert proxy_answer["released"] is True
        async with asyncio.timeout(10):
            await agent.coordinator.wait_finished()
    finally:
        await second.die()
    after = agent.coordinator.status()
    assert after.budget == before.budget
    assert [(r.container, r.reason) for r in after.releases] == [("app", "turn"), ("proxy", "turn")]
    assert after.hooks.received == {"app": 3, "proxy": 2}
    assert_done_once(pod)
    # One of each milestone on the pod.
    assert agent.events is not None
    await agent.events.flush(2.0)
    reasons = [e["reason"] for e in pod.cp.events_for(NAMESPACE, POD)]
    assert sorted(reasons) == [
        "AppReleased",
        "OutOfRotation",
        "ProxyReleased",
        "RegistryMarkedDown",
        "RegistryRetired",
        "ShutdownFinished",
    ]


async def test_a_hook_redelivered_after_the_shutdown_finished_is_answered_at_once(pod: Pod) -> None:
    agent = pod.agent
    pod.cp.delete_pod(NAMESPACE, POD)
    unroute(pod.cp)
    pod.app_listener.close()
    first = KubeletRun(agent)
    try:
        first.deliver("app", "proxy")
        await first.answer("app")
        await first.answer("proxy")
        async with asyncio.timeout(10):
            await agent.coordinator.wait_finished()
    finally:
        await first.die()
    finished = agent.coordinator.status()
    # A restarted kubelet delivers both hooks again; they are answered at once and start nothing.
    await answered_at_once(agent, "app")
    await answered_at_once(agent, "proxy")
    status = agent.coordinator.status()
    assert status.budget == finished.budget
    assert status.releases == finished.releases
    assert status.summary == finished.summary
    assert status.hooks.received == {"app": 2, "proxy": 2}
    assert_done_once(pod)
