"""The Envoy admin adapter against a small stand-in server: answers Envoy should not give."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.adapters.envoy import EnvoyAdmin
from sidecar.errors import AdapterError

_NOT_UTF8 = b"\xff\xfe listener.x.downstream_cx_active: 1\n"


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        status = 503 if request.path.startswith("/down/") else 200
        return web.Response(body=_NOT_UTF8 * 100, status=status, content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
async def admin(server: TestServer) -> AsyncIterator[EnvoyAdmin]:
    envoy = EnvoyAdmin(str(server.make_url("")).rstrip("/"))
    yield envoy
    await envoy.close()


async def test_an_answer_that_is_not_utf8_is_an_adapter_error_naming_the_call(
    admin: EnvoyAdmin, server: TestServer
) -> None:
    url = f"http://127.0.0.1:{server.port}/stats?filter=downstream_cx_active%24"
    with pytest.raises(AdapterError, match=f"^{re.escape(f'GET {url}: ')}body is not UTF-8") as e:
        await admin.active_connections()
    message = str(e.value)
    assert "(at byte 0)" in message, message
    assert "more characters)" in message  # the body quoted is truncated
    assert len(message) < 500


async def test_a_failure_status_with_a_body_that_is_not_utf8_keeps_its_status(
    server: TestServer,
) -> None:
    admin = EnvoyAdmin(str(server.make_url("/down")))
    try:
        with pytest.raises(
            AdapterError, match=r"^POST http://\S+/down/quitquitquit: HTTP 503: "
        ) as e:
            await admin.quit()
    finally:
        await admin.close()
    assert "more characters)" in str(e.value)
