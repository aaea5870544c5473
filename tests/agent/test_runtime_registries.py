"""The whole agent: a registry marked down before release, removed and read back, config cleaned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sidecar.agent.runtime import start_agent, stop_agent
from sidecar.drill.procs import free_port
from sidecar.settings import from_mapping


class Registry:
    """A registry holding one instance, and a config store holding one entry keyed by pod IP.

    Each is there until deleted; every call is recorded with its loop time.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.times: dict[tuple[str, str], float] = {}
        self.present = {"/apps/WEB/web-1": True, "/configs/weight-10.1.0.7": True}

    async def handle(self, request: web.Request) -> web.Response:
        call = (request.method, request.path_qs)
        self.calls.append(call)
        self.times.setdefault(call, asyncio.get_running_loop().time())
        if request.method == "PUT":
            return web.Response(status=200)
        if request.method == "DELETE":
            self.present[request.path] = False
            return web.Response(status=200)
        return web.Response(status=200 if self.present.get(request.path) else 404)


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Registry, str]]:
    fake = Registry()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_announce_marks_down_and_retire_removes_and_verifies_after_the_app_exited(
    registry: tuple[Registry, str],
) -> None:
    fake, url = registry
    instance = f"{url}/apps/WEB/{{pod.name}}"
    settings = from_mapping(
        {
            "containers": [{"name": "app", "ports": [free_port()]}],
            "server": {"host": "127.0.0.1", "port": free_port(), "allow_unauthenticated": True},
            "pod": {"name": "web-1", "namespace": "shop", "ips": ["10.1.0.7"]},
            "kubernetes": {"enabled": False},
            "phases": {
                "unroute_fallback_delay_seconds": 0.1,
                "quiet_window_seconds": 0.1,
                "quiet_window_min_seconds": 0.05,
                "quiesce_min_seconds": 0.1,
            },
            "traffic": {"sample_interval_seconds": 0.05},
            "registries": [
                {
                    "kind": "http",
                    "name": "eureka",
                    "mark_down": {"method": "PUT", "url": f"{instance}/status?value=DOWN"},
                    "deregister": {"method": "DELETE", "url": instance},
                    "verify": {"url": instance},
                }
            ],
            "config_cleanup": [
                {
                    "name": "weight",
                    "method": "DELETE",
                    "url": f"{url}/configs/weight-{{pod.ip}}",
                    "verify": {"url": f"{url}/configs/weight-{{pod.ip}}"},
                }
            ],
        },
        {},
    )
    agent = await start_agent(settings)
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            hook = f"http://127.0.0.1:{settings.server.port}/prestop/app"
            async with session.get(hook) as answer:
                assert answer.status == 200
            await agent.coordinator.wait_finished()
    finally:
        await stop_agent(agent)
    summary = agent.coordinator.status().summary
    assert summary is not None
    phases = summary["phases"]
    assert phases["announce"]["outcome"] == "ok"
    assert phases["announce"]["registries"]["eureka"]["outcome"] == "marked_down"
    assert phases["retire"]["outcome"] == "ok"
    assert phases["retire"]["registries"]["eureka"] == {
        "outcome": "removed",
        "deregister": "ok",
        "read": "absent",
        "attempts": 2,
    }
    assert phases["retire"]["actions"]["weight"]["outcome"] == "ok"
    exit_ended = phases["exit"]["started_seconds"] + phases["exit"]["duration_seconds"]
    assert phases["retire"]["started_seconds"] >= exit_ended  # after the app exited
    # The mark-down reached the registry before the app's hook was answered.
    released = agent.coordinator.status().releases[0]
    assert released.container == "app"
    assert fake.times[("PUT", "/apps/WEB/web-1/status?value=DOWN")] < released.at
    assert fake.calls[0] == ("PUT", "/apps/WEB/web-1/status?value=DOWN")
    assert ("DELETE", "/apps/WEB/web-1") in fake.calls
    assert ("DELETE", "/configs/weight-10.1.0.7") in fake.calls
    # The registry and the config store end empty, and the read-backs said so.
    assert fake.present == {"/apps/WEB/web-1": False, "/configs/weight-10.1.0.7": False}
    assert fake.calls[-1][0] == "GET"


async def test_the_configured_preparation_runs_once_through_prepare(
    registry: tuple[Registry, str],
) -> None:
    fake, url = registry
    settings = from_mapping(
        {
            "containers": [{"name": "app", "ports": [free_port()]}],
            "server": {"host": "127.0.0.1", "port": free_port(), "allow_unauthenticated": True},
            "pod": {"name": "web-1", "namespace": "shop", "ips": ["10.1.0.7"]},
            "kubernetes": {"enabled": False},
            "prepare_action": {"method": "PUT", "url": f"{url}/leader/{{pod.name}}/transfer"},
        },
        {},
    )
    agent = await start_agent(settings)
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            prepare = f"http://127.0.0.1:{settings.server.port}/prepare"
            for _ in range(2):
                async with session.post(prepare) as answer:
                    assert answer.status == 200
                    assert (await answer.json())["prepared"] is True
    finally:
        await stop_agent(agent)
    assert fake.calls == [("PUT", "/leader/web-1/transfer")]  # once: it succeeded
    assert not agent.coordinator.status().started  # preparing is not shutting down
