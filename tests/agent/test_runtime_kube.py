"""The whole agent against the API stand-in: restart vs deletion, pod grace, Events, idle API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from sidecar.agent.runtime import Agent, start_agent, stop_agent
from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from sidecar.drill.procs import free_port
from sidecar.settings import TOKEN_HEADER, from_mapping

TOKEN = "kube-token-0123456789abcdef"
REASONS = ("AppReleased", "OutOfRotation", "ShutdownFinished")
Start = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def cp() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane()
    await plane.start()
    plane.create("services", service_object("web"))
    plane.create("pods", pod_object("web-1", ("127.0.0.1",), grace_seconds=8))
    yield plane
    await plane.stop()


@pytest.fixture
async def start(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[Start]:
    running: list[Agent] = []

    async def make(**overrides: Any) -> Agent:
        pod = cp.store.get("pods", NAMESPACE, "web-1") or {}
        data: dict[str, Any] = {
            "containers": [
                {"name": "app", "ports": [free_port()]},
                {"name": "sidecar", "ports": [free_port()]},
            ],
            "release_order": [["app"], ["sidecar"]],
            "server": {"host": "127.0.0.1", "port": free_port()},
            "budget": {"grace_seconds": 30, "sigterm_reserve_seconds": 1},
            "phases": {
                "unroute_fallback_delay_seconds": 0.3,
                "quiet_window_seconds": 0.2,
                "quiesce_min_seconds": 0.1,
            },
            "traffic": {"sample_interval_seconds": 0.05},
            "pod": {"name": "web-1", "namespace": NAMESPACE, "uid": pod["metadata"]["uid"]},
            "kubernetes": {
                "kubeconfig": str(cp.write_kubeconfig(tmp_path / "kubeconfig")),
                "request_timeout_seconds": 0.5,
            },
            **overrides,
        }
        agent = await start_agent(from_mapping(data, {"SHUTDOWN_COORDINATOR_TOKEN": TOKEN}))
        running.append(agent)
        return agent

    yield make
    for agent in running:
        await stop_agent(agent)


async def hook(agent: Agent, container: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{agent.settings.server.port}/prestop/{container}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={TOKEN_HEADER: TOKEN}) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def get(agent: Agent, path: str) -> Any:
    url = f"http://127.0.0.1:{agent.settings.server.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json() if path == "/status" else await response.text()


async def test_a_serving_agent_never_calls_the_api(cp: ControlPlane, start: Start) -> None:
    agent = await start()
    for path in ("/healthz", "/readyz", "/status", "/metrics"):
        await get(agent, path)
    assert cp.requests == []


async def test_a_restart_releases_only_that_container_and_a_later_deletion_runs_in_full(
    cp: ControlPlane, start: Start
) -> None:
    agent = await start()
    async with asyncio.timeout(5):
        await hook(agent, "app")
    status = await get(agent, "/status")
    assert status["kind"] == "restart"
    assert status["containers"]["app"]["state"] == "released"
    assert status["containers"]["app"]["reason"] == "restart"
    assert status["containers"]["sidecar"]["state"] == "waiting"
    assert [p["phase"] for p in status["timeline"]] == ["confirm", "drain"]
    assert status["timeline"][0]["detail"]["kind"] == "restart"

    cp.delete_pod(NAMESPACE, "web-1")
    async with asyncio.timeout(10):
        await asyncio.gather(hook(agent, "app"), hook(agent, "sidecar"))
    status = await get(agent, "/status")
    phases = [p["phase"] for p in status["timeline"]]
    assert phases[:3] == ["confirm", "announce", "unroute"] or phases[:3] == [
        "confirm",
        "unroute",
        "announce",
    ]
    assert status["timeline"][0]["detail"]["kind"] == "deletion"
    assert status["summary"]["released"]["sidecar"]["reason"] == "turn"
    # The pod's own grace (8 s), not the configured 30 s, set the budget (B1).
    assert status["budget"]["grace_seconds"] == 8


async def test_milestones_and_warnings_become_events_on_the_pod(
    cp: ControlPlane, start: Start
) -> None:
    agent = await start()
    cp.delete_pod(NAMESPACE, "web-1")
    async with asyncio.timeout(10):
        await asyncio.gather(hook(agent, "app"), hook(agent, "sidecar"))
        await agent.coordinator.wait_finished()
    assert agent.events is not None
    await agent.events.flush(2.0)
    events = cp.events_for(NAMESPACE, "web-1")
    messages = {r: sorted(e["message"] for e in events if e["reason"] == r) for r in REASONS}
    # Each milestone names what it is about: the containers and their reason, the verdict.
    assert messages["AppReleased"] == [
        "container app released (turn)",
        "container sidecar released (turn)",
    ]
    (out,) = messages["OutOfRotation"]
    assert out.startswith("out of rotation after "), out
    assert out.endswith(" s (verdict=out_of_rotation)"), out
    (finished,) = messages["ShutdownFinished"]
    assert finished.startswith("shutdown ok in "), finished
    assert [e["type"] for e in events] == ["Normal"] * 4  # nothing else was posted


async def test_a_forbidden_pod_read_is_trusted_by_default_and_warned_about(
    cp: ControlPlane, start: Start
) -> None:
    agent = await start()
    cp.faults = Faults(status=403, path_contains="/pods/web-1")
    async with asyncio.timeout(10):
        await asyncio.gather(hook(agent, "app"), hook(agent, "sidecar"))
        await agent.coordinator.wait_finished()
    assert agent.events is not None
    await agent.events.flush(2.0)
    status = await get(agent, "/status")
    confirm, unroute = (
        status["timeline"][0],
        next(p for p in status["timeline"] if p["phase"] == "unroute"),
    )
    assert confirm["outcome"] == "degraded"
    assert confirm["detail"]["treated_as"] == "deletion"
    assert unroute["outcome"] == "degraded"
    assert unroute["detail"]["reason"] == "API not available: waited a fixed delay"
    warnings = [e for e in cp.events_for(NAMESPACE, "web-1") if e["type"] == "Warning"]
    assert sorted(e["reason"] for e in warnings) == [
        "ShutdownFinished",
        "ShutdownPhaseDegraded",
        "ShutdownPhaseDegraded",
    ]
    # The confirm warning names the failed call, its status and what the hook was taken for.
    (said,) = [e["message"] for e in warnings if e["message"].startswith("confirm: ")]
    assert said.startswith("confirm: degraded (by=token, api_error=get pod: HTTP 403: "), said
    assert said.endswith(", treated_as=deletion)"), said


async def test_an_event_api_that_hangs_never_delays_a_hook(cp: ControlPlane, start: Start) -> None:
    agent = await start()
    cp.faults = Faults(delay_seconds=30, path_contains="/events")
    cp.delete_pod(NAMESPACE, "web-1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        async with asyncio.timeout(10):
            await asyncio.gather(hook(agent, "app"), hook(agent, "sidecar"))
            await agent.coordinator.wait_finished()
        took = loop.time() - started
        assert agent.events is not None
        flush_started = loop.time()
        await agent.events.flush(0.5)
    assert loop.time() - flush_started < 1.0
    # Each post gave up after the API timeout (0.5 s) on its own, beside the shutdown.
    assert agent.events.failures >= 1
    # Only the first failure is logged, naming the Event that was lost: the first milestone.
    (warned,) = [e for e in logs if e["event"] == "event_not_posted"]
    assert warned["reason"] == "OutOfRotation"
    # The adapter's own timeout names the call; the poster's guard comes later.
    assert warned["error"] == "create event: no answer within 0.5 s"
    assert took < 5
    assert cp.events_for(NAMESPACE, "web-1") == []
