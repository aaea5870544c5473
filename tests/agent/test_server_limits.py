"""The server under slow and many connections: heads time out, tokenless ones capped, hooks held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.agent.metrics import Metrics
from sidecar.agent.server import start_server
from sidecar.drill.procs import free_port
from sidecar.settings import TOKEN_HEADER
from sidecar.shutdown.coordinator import Coordinator
from tests.shutdown.doubles import NoProcesses, RecordingProxy, ScriptedTraffic, pod_settings

pytestmark = pytest.mark.looptime

TOKEN = "s3cret-token-0123456789"
AUTH = {TOKEN_HEADER: TOKEN}
#: The documented limits (docs/http-api.md): a request head must be complete within 5 s, and
#: at most 256 connections that have not shown the token are kept.
HEADER_TIMEOUT_SECONDS = 5.0
MAX_UNTRUSTED_CONNECTIONS = 256
#: How many slowloris connections the test opens: more than the cap.
SLOW_CONNECTIONS = 300


@dataclass
class Served:
    port: int
    coordinator: Coordinator
    runner: web.AppRunner
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.session.get(self.url + path, headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    port = free_port()
    settings = pod_settings(
        server={"token": TOKEN, "host": "127.0.0.1", "port": port}, budget={"grace_seconds": 8}
    )
    metrics = Metrics()
    coordinator = Coordinator(
        settings,
        traffic=ScriptedTraffic(),
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        listener=metrics,
    )
    runner = await start_server(settings, coordinator, metrics, flush_seconds=1.0)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield Served(port, coordinator, runner, session)
    await session.close()
    await coordinator.close()
    await runner.cleanup()


async def slowloris(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, give_up_seconds: float
) -> float | None:
    """Send a request head one byte a second; return when the server closed, None if never."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in head:
            writer.write(bytes([byte]))
            if loop.time() - started > give_up_seconds:
                return None
            try:
                # Between two bytes, wait one second for the server to hang up.
                async with asyncio.timeout(1.0):
                    if await reader.read(1) == b"":
                        return loop.time() - started
            except TimeoutError:
                continue
    except ConnectionError:
        return loop.time() - started
    finally:
        writer.close()
    return None


async def test_slow_heads_are_closed_and_capped_while_health_and_held_hooks_answer(
    served: Served,
) -> None:
    # A hook the kubelet sent before the flood: the oldest connection, holding the token.
    app_hook = asyncio.ensure_future(served.get("/prestop/app", AUTH))
    tasks: list[asyncio.Future[Any]] = [app_hook]
    try:
        await asyncio.wait_for(served.coordinator.wait_first_hook(), 2)
        await flood(served, tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def flood(served: Served, tasks: list[asyncio.Future[Any]]) -> None:
    (app_hook,) = tasks
    opened = [
        await asyncio.open_connection("127.0.0.1", served.port) for _ in range(SLOW_CONNECTIONS)
    ]
    slow = [
        asyncio.ensure_future(slowloris(r, w, give_up_seconds=3 * HEADER_TIMEOUT_SECONDS))
        for r, w in opened
    ]
    tasks += slow
    # While they trickle: health answers, and a second hook gets through and is held too.
    assert await asyncio.wait_for(served.get("/healthz"), 2) == (200, "ok\n")
    envoy_hook = asyncio.ensure_future(served.get("/prestop/envoy", AUTH))
    tasks.append(envoy_hook)
    server = served.runner.server
    assert server is not None
    # Every tokenless connection beyond the cap was shed: the two hooks and at most the cap remain.
    assert len(server.connections) <= MAX_UNTRUSTED_CONNECTIONS + 2

    closed_after = await asyncio.gather(*slow)
    assert None not in closed_after, f"{closed_after.count(None)} slow connections never closed"
    assert max(t for t in closed_after if t is not None) <= HEADER_TIMEOUT_SECONDS + 1.0
    shed_at_once = [t for t in closed_after if t is not None and t < 1.0]
    assert len(shed_at_once) >= SLOW_CONNECTIONS - MAX_UNTRUSTED_CONNECTIONS

    # The held hooks were never cut: both are answered by the plan, with 200.
    results = await asyncio.wait_for(asyncio.gather(app_hook, envoy_hook), 20)
    assert [status for status, _ in results] == [200, 200]
    assert await served.get("/healthz") == (200, "ok\n")
