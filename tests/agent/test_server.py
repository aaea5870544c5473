"""The agent's HTTP server: token and container checks, hooks joining one shutdown, /status."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from sidecar.adapters.envoy import EnvoyAdmin
from sidecar.agent.metrics import Metrics
from sidecar.agent.server import start_server
from sidecar.drill.procs import free_port
from sidecar.settings import TOKEN_HEADER, Settings
from sidecar.shutdown.coordinator import Coordinator
from sidecar.shutdown.protocols import ProxyAdmin, TrafficSource
from tests.agent.rawhttp import exchange, status_of
from tests.shutdown.doubles import (
    NoProcesses,
    RecordingProxy,
    ScriptedTraffic,
    StuckTraffic,
    pod_settings,
)

pytestmark = pytest.mark.looptime

TOKEN = "s3cret-token-0123456789"
AUTH = {TOKEN_HEADER: TOKEN}


@dataclass
class Agent:
    url: str
    coordinator: Coordinator
    session: aiohttp.ClientSession

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.get(self.url + path, headers=headers) as response:
            body = (
                await response.json()
                if response.content_type == "application/json"
                else await response.text()
            )
            return response.status, body


async def serve(
    settings: Settings, traffic: TrafficSource, proxy: ProxyAdmin | None
) -> tuple[Agent, web.AppRunner]:
    metrics = Metrics()
    coordinator = Coordinator(
        settings, traffic=traffic, processes=NoProcesses(), proxy=proxy, listener=metrics
    )
    metrics.watch(coordinator.status, settings.budget.grace_seconds)
    port = free_port()
    server = dataclasses.replace(settings.server, host="127.0.0.1", port=port)
    settings = dataclasses.replace(settings, server=server)
    runner = await start_server(settings, coordinator, metrics, flush_seconds=1.0)
    return Agent(f"http://127.0.0.1:{port}", coordinator, aiohttp.ClientSession()), runner


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    settings = pod_settings(
        server={"token": TOKEN, "allow_unauthenticated": False}, budget={"grace_seconds": 4}
    )
    running, runner = await serve(settings, ScriptedTraffic(), RecordingProxy())
    yield running
    await running.session.close()
    await running.coordinator.close()
    await runner.cleanup()


async def test_a_hook_without_the_token_is_refused_at_once_and_starts_nothing(agent: Agent) -> None:
    with capture_logs() as logs:
        for headers in (None, {TOKEN_HEADER: "wrong"}, {TOKEN_HEADER: TOKEN + "x"}):
            status, body = await agent.get("/prestop/app", headers)
            assert status == 403
            assert body == {"error": "forbidden: missing or wrong token"}  # no container names
    assert not agent.coordinator.status().started
    _, status = await agent.get("/status")
    assert status["phase"] == "idle"
    assert status["hooks"]["rejected"] == {"token": 3}
    assert [e["reason"] for e in logs if e["event"] == "prestop_rejected"] == [
        "bad or missing token"
    ] * 3
    _, metrics = await agent.get("/metrics")
    assert 'shutdown_coordinator_hooks_total{container="",result="rejected_token"} 3.0' in metrics


async def test_a_token_with_a_non_ascii_byte_is_refused_like_any_wrong_token(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(agent.url.rsplit(":", 1)[1])
    with capture_logs() as logs:
        for token in (b"\xff", TOKEN.encode() + b"\xff", b"\xc3\xa9t\xc3\xa9-\x80-0123456789"):
            answer = await exchange(
                port,
                b"GET /prestop/app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + TOKEN_HEADER.encode()
                + b": "
                + token
                + b"\r\n\r\n",
            )
            assert status_of(answer) == 403, answer
    assert [e["reason"] for e in logs if e["event"] == "prestop_rejected"] == [
        "bad or missing token"
    ] * 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info]
    assert not agent.coordinator.status().started


async def test_a_hook_for_an_unknown_container_gets_404_naming_the_known_ones(agent: Agent) -> None:
    with capture_logs() as logs:
        status, body = await agent.get("/prestop/db", AUTH)
    assert [(e["event"], e["reason"], e["container"], e["known"]) for e in logs] == [
        ("prestop_rejected", "unknown container", "db", ["app", "envoy"])
    ]
    assert status == 404
    assert body == {"error": "unknown container 'db'", "known": ["app", "envoy"]}
    assert not agent.coordinator.status().started


async def test_health_and_readiness_answer_while_idle(agent: Agent) -> None:
    assert await agent.get("/healthz") == (200, "ok\n")
    assert await agent.get("/readyz") == (200, "ready\n")


async def test_a_caller_hanging_up_does_not_stop_the_shutdown_and_a_later_hook_returns_at_once(
    agent: Agent,
) -> None:
    request = asyncio.ensure_future(agent.get("/prestop/app", AUTH))
    await asyncio.wait_for(agent.coordinator.wait_first_hook(), 2)
    request.cancel()  # the caller goes away while its hook is held
    await asyncio.gather(request, return_exceptions=True)
    # The proxy's hook keeps the flight going until the app's exit (its port still listens).
    envoy = asyncio.ensure_future(agent.get("/prestop/envoy", AUTH))
    await asyncio.wait_for(agent.coordinator.wait_released("app"), 4)
    assert agent.coordinator.status().started
    loop = asyncio.get_running_loop()
    asked = loop.time()
    status, body = await agent.get("/prestop/app", AUTH)
    assert status == 200
    assert body["released"] is True
    assert loop.time() - asked < 0.5
    _, doc = await agent.get("/status")
    assert doc["containers"]["app"]["hooks_received"] == 2
    assert doc["containers"]["app"]["state"] == "released"
    assert (await envoy)[0] == 200


async def test_concurrent_and_repeated_hooks_join_one_shutdown(agent: Agent) -> None:
    results = await asyncio.gather(
        *(agent.get(f"/prestop/{n}", AUTH) for n in ("app", "app", "envoy", "envoy"))
    )
    assert [status for status, _ in results] == [200] * 4
    await agent.coordinator.wait_finished()
    _, doc = await agent.get("/status")
    assert [r["phase"] for r in doc["timeline"]].count("quiesce") == 1
    assert doc["summary"]["released"].keys() == {"app", "envoy"}
    assert doc["budget"]["remaining_seconds"] > 0


async def _shutdown(
    settings: Settings, traffic: TrafficSource, proxy: ProxyAdmin | None
) -> dict[str, Any]:
    """Run the pod's hooks as the kubelet does and return /status once finished."""
    running, runner = await serve(settings, traffic, proxy)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(running.get(f"/prestop/{n}", {TOKEN_HEADER: "x" * 16}) for n in ("app", "envoy"))
        )
        assert [status for status, _ in results] == [200, 200]
        assert loop.time() - started < settings.budget.grace_seconds
        await running.coordinator.wait_finished()
        _, doc = await running.get("/status")
        return doc  # type: ignore[no-any-return]
    finally:
        await running.session.close()
        await running.coordinator.close()
        await runner.cleanup()


async def test_envoy_admin_unreachable_is_reported_and_every_hook_still_answered() -> None:
    settings = pod_settings(server={"token": "x" * 16}, budget={"grace_seconds": 10})
    admin_url = f"http://127.0.0.1:{free_port()}"
    envoy = EnvoyAdmin(admin_url, timeout_seconds=0.3)
    traffic = ScriptedTraffic()
    traffic.listening = {15006}  # the app stops listening as soon as the kubelet signals it
    with capture_logs() as logs:
        doc = await _shutdown(settings, traffic, envoy)
    await envoy.close()
    phases = {p["phase"]: p for p in doc["timeline"]}
    assert phases["quiesce"]["outcome"] == "degraded"
    drain_detail = phases["quiesce"]["detail"]["proxy_drain"]
    assert drain_detail.startswith(f"failed: POST {admin_url}/drain_listeners?"), drain_detail
    quit_detail = phases["release_proxy"]["detail"]["envoy_quit"]
    assert quit_detail.startswith(f"failed: POST {admin_url}/quitquitquit: "), quit_detail
    assert doc["summary"]["outcome"] == "degraded"
    assert [r["reason"] for r in doc["summary"]["released"].values()] == ["turn", "turn"]
    (finished,) = [e for e in logs if e["event"] == "shutdown_finished"]
    assert finished["outcome"] == "degraded"
    assert finished["phases"]["quiesce"]["outcome"] == "degraded"


async def test_an_app_that_never_drains_is_released_at_its_latest_time_with_an_honest_report() -> (
    None
):
    settings = pod_settings(server={"token": "x" * 16}, budget={"grace_seconds": 4})
    with capture_logs() as logs:
        doc = await _shutdown(settings, StuckTraffic(), RecordingProxy())
    (finished,) = [e for e in logs if e["event"] == "shutdown_finished"]
    assert finished["released"]["app"]["reason"] == "deadline"
    assert finished["outcome"] == "degraded"
    phases = {p["phase"]: p for p in doc["timeline"]}
    assert phases["quiesce"]["outcome"] == "timed_out"
    assert doc["containers"]["app"]["reason"] == "deadline"
    assert (
        doc["containers"]["app"]["released_at_seconds"]
        <= doc["budget"]["release_by_seconds"][0] + 0.05
    )
    assert (
        doc["containers"]["envoy"]["released_at_seconds"]
        <= doc["budget"]["release_by_seconds"][1] + 0.05
    )
    assert phases["exit"]["outcome"] == "timed_out"  # the app never stopped listening


async def test_a_deadline_shorter_than_the_quiet_window_shows_quiesce_timed_out_in_status() -> None:
    settings = pod_settings(
        server={"token": "x" * 16}, budget={"grace_seconds": 3}, phases={"quiet_window_seconds": 30}
    )
    traffic = ScriptedTraffic()
    traffic.listening = {15006}
    with capture_logs() as logs:
        doc = await _shutdown(settings, traffic, RecordingProxy())
    phases = {p["phase"]: p for p in doc["timeline"]}
    assert phases["quiesce"]["outcome"] == "timed_out"
    assert (
        doc["containers"]["app"]["released_at_seconds"]
        <= doc["budget"]["release_by_seconds"][0] + 0.05
    )
    timed_out = [
        e["phase"] for e in logs if e["event"] == "phase_finished" and e["outcome"] == "timed_out"
    ]
    assert timed_out == ["quiesce"]  # the only phase cut short: exit still saw the app go
