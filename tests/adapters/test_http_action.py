"""Pins the shared HTTP client over real loopback HTTP: what is sent (method, rendered URL, body,
content type, secret headers read at call time), status and read-back checks, remote bodies
truncated in errors, and every request bounded by its timeout and the deadline."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.adapters.http_action import HttpAction, HttpClient
from sidecar.errors import AdapterError
from sidecar.model.http_action import Identity, render_action
from sidecar.settings.registries import HeaderSettings, HttpActionSettings, HttpVerifySettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

POD = Identity(name="web 1", namespace="shop", uid="u-1", ips=("10.0.0.7",))


class Echo:
    """A server that records each request and answers as told per path."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.status: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.hang_started = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/hang", self.hang)
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.server = TestServer(app, host="127.0.0.1")

    async def answer(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "body": await request.text(),
                "headers": dict(request.headers),
            }
        )
        return web.Response(
            status=self.status.get(request.path, 200), text=self.body.get(request.path, "")
        )

    async def hang(self, request: web.Request) -> web.Response:
        self.hang_started.set()
        await asyncio.Event().wait()
        raise AssertionError  # pragma: no cover

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    await server.server.start_server()
    yield server
    await server.server.close()


def _deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_the_rendered_request_arrives_as_rendered(echo: Echo, client: HttpClient) -> None:
    settings = HttpActionSettings(
        url=echo.url("/") + "ns/{pod.namespace}/pods/{pod.name}?ip={pod.ip}",
        method="PUT",
        body='{"uid": "{pod.uid}", "status": "OUT_OF_SERVICE"}',
        headers=(HeaderSettings("Accept", "application/json"),),
    )
    status = await client.run(render_action(settings, POD, "offline"), _deadline())
    assert status == 200
    [seen] = echo.seen
    assert (seen["method"], seen["path"]) == ("PUT", "/ns/shop/pods/web%201?ip=10.0.0.7")
    assert seen["body"] == '{"uid": "u-1", "status": "OUT_OF_SERVICE"}'
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Accept"] == "application/json"


async def test_a_secret_header_is_read_from_its_file_at_each_call(
    echo: Echo, client: HttpClient, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("first-token\n")
    header = HeaderSettings("Authorization", file=str(secret), prefix="Bearer ")
    action = HttpAction(
        render_action(HttpActionSettings(url=echo.url("/x"), headers=(header,)), POD, "a"), client
    )
    await action.run(_deadline())
    secret.write_text("rotated-token")
    await action.run(_deadline())
    assert [s["headers"]["Authorization"] for s in echo.seen] == [
        "Bearer first-token",
        "Bearer rotated-token",
    ]


async def test_an_unreadable_secret_file_is_an_error_naming_the_file(
    echo: Echo, client: HttpClient, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    header = HeaderSettings("X-Token", file=str(missing))
    action = render_action(HttpActionSettings(url=echo.url("/x"), headers=(header,)), POD, "a")
    with pytest.raises(AdapterError, match=f"header X-Token: cannot read secret file {missing}"):
        await client.run(action, _deadline())
    assert echo.seen == []


async def test_an_unexpected_status_is_an_error_quoting_the_body_truncated(
    echo: Echo, client: HttpClient
) -> None:
    echo.status["/x"], echo.body["/x"] = 500, "E" * 5000
    action = render_action(HttpActionSettings(url=echo.url("/x"), name="offline"), POD, "a")
    with pytest.raises(AdapterError) as caught:
        await client.run(action, _deadline())
    message = str(caught.value)
    assert message.startswith(f"offline: POST {echo.url('/x')}: HTTP 500, expected 200, 201, 202")
    assert message.endswith("E... (4744 more characters)")


async def test_a_standalone_action_is_done_only_when_its_read_back_says_gone(
    echo: Echo, client: HttpClient
) -> None:
    url = echo.url("/") + "cfg/{pod.uid}"
    settings = HttpActionSettings(
        url=url,
        method="DELETE",
        name="cleanup",
        # A second cleanup finds nothing to delete: that is fine too.
        expect_statuses=(200, 204, 404),
        verify=HttpVerifySettings(url=url),
    )
    action = render_action(settings, POD, "cleanup")
    with pytest.raises(AdapterError, match=r"^cleanup: the read-back .*/cfg/u-1 says present$"):
        await client.run(action, _deadline())
    echo.status["/cfg/u-1"] = 404
    assert await client.run(action, _deadline()) == 404
    assert [s["method"] for s in echo.seen] == ["DELETE", "GET", "DELETE", "GET"]


async def test_a_hanging_server_is_cut_at_the_deadline(echo: Echo, client: HttpClient) -> None:
    action = render_action(HttpActionSettings(url=echo.url("/hang")), POD, "a")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.3
    with pytest.raises(AdapterError, match=r"/hang: no answer within 0\.3"):
        await client.run(action, deadline)
    assert echo.hang_started.is_set()
    assert loop.time() == pytest.approx(deadline, abs=0.1)


async def test_the_per_request_timeout_applies_before_a_far_deadline(
    echo: Echo, client: HttpClient
) -> None:
    settings = HttpActionSettings(url=echo.url("/hang"), timeout_seconds=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(AdapterError, match=r"no answer within 0\.2 s"):
        await client.run(render_action(settings, POD, "a"), start + 30)
    assert loop.time() - start == pytest.approx(0.2, abs=0.1)


async def test_a_passed_deadline_sends_nothing(echo: Echo, client: HttpClient) -> None:
    action = render_action(HttpActionSettings(url=echo.url("/x")), POD, "a")
    with pytest.raises(AdapterError, match="no time left before the deadline"):
        await client.run(action, _deadline(-0.1))
    assert echo.seen == []


async def test_a_refused_connection_is_an_adapter_error(client: HttpClient) -> None:
    action = render_action(HttpActionSettings(url="http://127.0.0.1:9/x"), POD, "a")
    with pytest.raises(AdapterError, match=r"POST http://127\.0\.0\.1:9/x: ClientConnectorError"):
        await client.run(action, _deadline())
