"""Graceful shutdown: the listener closes, a review in flight is still answered, within a bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from sidecar.injector import server
from tests.injector.conftest import PLAIN_POD, SERVICE_HOST, Served, review

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _in_flight(served: Served) -> asyncio.Event:
    """An event set once a review has reached its handler (its body may be still arriving).

    The webhook is restarted so that a middleware can be added first.
    """
    await served.webhook.stop()
    entered = asyncio.Event()

    @web.middleware
    async def mark(request: web.Request, handler: Handler) -> web.StreamResponse:
        entered.set()
        return await handler(request)

    served.webhook.app = server.build_app(served.webhook.reviews)
    served.webhook.app.middlewares.append(mark)
    await served.webhook.start()
    return entered


async def _slow_body(first: bytes, rest: bytes, go: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await go.wait()
    yield rest


async def _post_slowly(served: Served, go: asyncio.Event) -> tuple[int, dict[str, object]]:
    body = json.dumps(review(PLAIN_POD)).encode()
    async with served.session.post(
        served.url + "/mutate",
        data=_slow_body(body[:100], body[100:], go),
        ssl=served.client_ssl,
        server_hostname=SERVICE_HOST,
    ) as response:
        return response.status, await response.json()


async def test_a_review_in_flight_is_answered_while_the_listener_is_closed(
    served: Served,
) -> None:
    entered = await _in_flight(served)
    go = asyncio.Event()
    posting = asyncio.create_task(_post_slowly(served, go))
    await entered.wait()
    stopping = asyncio.create_task(served.webhook.stop())
    await served.webhook.draining.wait()
    # Closed to new connections, and unready, while the review is still being read.
    with pytest.raises(ConnectionError):  # refused (or reset, as the listener closes)
        await asyncio.open_connection("127.0.0.1", served.webhook.port)
    assert not served.webhook.reviews.ready
    assert not stopping.done()
    go.set()
    status, body = await posting
    assert status == 200
    assert "patch" in body["response"]  # type: ignore[operator]
    await stopping


async def test_a_review_that_never_finishes_is_cut_at_the_bound(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IN_FLIGHT_SECONDS", 0.2)
    entered = await _in_flight(served)
    never = asyncio.Event()
    posting = asyncio.create_task(_post_slowly(served, never))
    await entered.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await served.webhook.stop()
    assert 0.2 <= loop.time() - started < 0.2 + 2 * server.CUT_SECONDS + 0.5
    with pytest.raises(aiohttp.ClientError):
        await posting
