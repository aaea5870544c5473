"""The whole agent with a generic HTTP registry: marked down, then removed and read back."""

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
    """A registry that holds one instance until it is deleted; it records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.present = True
        self.down = False

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path_qs))
        if request.method == "PUT":
            self.down = True
            return web.Response(status=200)
        if request.method == "DELETE":
            self.present = False
            return web.Response(status=200)
        return web.Response(status=200 if self.present else 404)


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
            "pod": {"name": "web-1", "namespace": "shop"},
            "kubernetes": {"enabled": False},
            "phases": {
                "unroute_fallback_delay_seconds": 0.1,
                "quiet_window_seconds": 0.1,
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
    assert phases["retire"]["started_seconds"] >= phases["exit"]["started_seconds"]
    assert fake.calls[0] == ("PUT", "/apps/WEB/web-1/status?value=DOWN")
    assert ("DELETE", "/apps/WEB/web-1") in fake.calls
    assert fake.calls[-1] == ("GET", "/apps/WEB/web-1")
    assert not fake.present
