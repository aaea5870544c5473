"""The ingress Envoy follows its EDS file: a removed endpoint stops getting new requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidecar.drill.dataplane import EndpointsFile
from sidecar.drill.procs import free_port, start_ingress

pytestmark = pytest.mark.envoy


@pytest.fixture
async def backends() -> AsyncIterator[list[tuple[str, int]]]:
    runners = []
    addresses = []
    for name in ("a", "b"):
        app = web.Application()

        async def answer(_: web.Request, name: str = name) -> web.Response:
            return web.Response(text=name)

        app.router.add_get("/", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        addresses.append(("127.0.0.1", port))
    yield addresses
    for runner in runners:
        await runner.cleanup()


async def answers(url: str, count: int) -> set[str]:
    async with aiohttp.ClientSession() as session:
        seen = set()
        for _ in range(count):
            async with session.get(url, headers={"Connection": "close"}) as response:
                seen.add(await response.text())
        return seen


async def test_the_ingress_stops_routing_to_an_endpoint_removed_from_its_file(
    tmp_path: Path, backends: list[tuple[str, int]]
) -> None:
    eds = EndpointsFile(tmp_path / "eds.json", backends)
    listen, admin = free_port(), free_port()
    ingress = await start_ingress(tmp_path, listen_port=listen, admin_port=admin, eds_path=eds.path)
    url = f"http://127.0.0.1:{listen}/"
    try:
        async with asyncio.timeout(10):
            while await answers(url, 10) != {"a", "b"}:  # EDS is read shortly after start
                continue
        eds.remove(backends[0])
        assert eds.version == 2
        async with asyncio.timeout(10):
            while await answers(url, 10) != {"b"}:  # the move is seen within a moment
                continue
        assert await answers(url, 30) == {"b"}
    finally:
        await ingress.stop()
