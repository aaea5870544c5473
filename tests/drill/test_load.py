"""The load generator counts every request once; the pinned client moves only when told to close."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.drill.app import SERVED_BY
from sidecar.drill.load import LoadRun, Request, generate, merged, pinned
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


@pytest.fixture
async def server_ok() -> AsyncIterator[str]:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="ok", headers={SERVED_BY: "a"})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
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
    # The hung request ends as the client's timeout; a reset one is retried once by aiohttp
    # on a fresh connection, or named by its own error.
    assert "TimeoutError" in transport, run.failures()
    assert transport <= {"TimeoutError", "ServerDisconnectedError", "ClientOSError"}
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


async def test_the_pinned_client_keeps_its_connection_until_told_to_close_then_resolves() -> None:
    stop = asyncio.Event()
    peers: dict[str, list[object]] = {"a": [], "b": []}

    def app(name: str) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            assert request.transport is not None
            peers[name].append(request.transport.get_extra_info("peername"))
            if name == "b" and len(peers["b"]) == 2:
                stop.set()
            close = name == "a" and len(peers["a"]) == 2  # a drain, on the second request
            headers = {SERVED_BY: name, **({"Connection": "close"} if close else {})}
            return web.Response(text="ok", headers=headers)

        application = web.Application()
        application.router.add_get("/", answer)
        return application

    runners, urls = [], []
    for name in ("a", "b"):
        runner = web.AppRunner(app(name))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}/")
    resolved = iter(urls)
    try:
        async with asyncio.timeout(5):
            run = await pinned(lambda: next(resolved), interval_seconds=0.01, stop=stop)
    finally:
        for runner in runners:
            await runner.cleanup()
    assert [(r.served_by, r.closed) for r in run.requests] == [
        ("a", False),
        ("a", True),
        ("b", False),
        ("b", False),
    ]
    # Both requests to `a` came on one keep-alive connection; `b` got a new one and kept it.
    assert len(set(peers["a"])) == 1
    assert len(set(peers["b"])) == 1
    assert run.failures() == {}


async def test_bursts_send_each_period_at_once_at_the_same_mean_rate(server_ok: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.9, stop.set)
    run = await generate(server_ok, rate_per_second=20, stop=stop, burst_every_seconds=0.4)
    starts = sorted(r.started - run.started_at for r in run.requests)
    # 8 per burst (20/s x 0.4 s) at 0, 0.4 and 0.8 s, nothing in between.
    assert len(starts) == 24
    for index in range(3):
        burst = starts[index * 8 : index * 8 + 8]
        assert all(abs(t - 0.4 * index) < 0.1 for t in burst), starts
    assert run.failures() == {}


def test_merged_runs_keep_every_request_of_every_client_in_start_order() -> None:
    first, second = LoadRun(5, 1.0, 3.0), LoadRun(5, 0.5, 4.0)
    first.requests = [Request(2.0, 2.1, 200, None), Request(1.0, 1.1, 503, None)]
    second.requests = [Request(1.5, 9.0, None, "unfinished")]
    both = merged([first, second])
    assert both is not None
    assert [r.started for r in both.requests] == [1.0, 1.5, 2.0]
    assert (both.started_at, both.stopped_at, both.rate_asked) == (0.5, 4.0, 10)
    assert both.failures() == {"HTTP 503": 1, "unfinished": 1}
    assert merged([]) is None
