"""The load generator accounts for every request: success, HTTP error or transport error."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.drill.app import SERVED_BY
from sidecar.drill.load import generate
from sidecar.drill.procs import free_port


@pytest.fixture
async def server() -> AsyncIterator[str]:
    turns = itertools.count()
    hang = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        turn = next(turns) % 4
        if turn == 1:
            return web.Response(status=503, text="busy")
        if turn == 2:
            assert request.transport is not None
            request.transport.abort()  # a connection reset, mid-request
            return web.Response()
        if turn == 3:
            await hang.wait()  # never answers before the client gives up
        return web.Response(text="ok", headers={SERVED_BY: "a"})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
    hang.set()
    await runner.cleanup()


async def test_every_request_sent_is_counted_once_with_how_it_ended(server: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    run = await generate(server, rate_per_second=40, stop=stop, timeout_seconds=0.3)
    summary = run.summary()
    assert summary["requests"] == len(run.requests)
    assert summary["ok"] + summary["http_errors"] + summary["transport_errors"] == len(run.requests)
    assert 15 <= len(run.requests) <= 21  # 40/s for 0.5 s, the first at once
    assert summary["ok"] >= 1
    assert summary["http_errors"] >= 1
    assert run.failures()["HTTP 503"] == summary["http_errors"]
    transport = {k for k in run.failures() if not k.startswith("HTTP")}
    assert transport, run.failures()
    assert all(r.served_by == "a" for r in run.requests if r.kind == "ok")
    assert summary["latency_p99_ms"] is not None


async def test_a_request_still_running_at_the_stop_is_waited_for_then_counted() -> None:
    stop = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        stop.set()  # the run stops while this request is in flight
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        run = await generate(f"http://127.0.0.1:{port}/", rate_per_second=1, stop=stop)
    finally:
        await runner.cleanup()
    assert len(run.requests) == 1
    assert run.requests[0].kind == "ok"
