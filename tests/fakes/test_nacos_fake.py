"""The Nacos fake answers as the real server does, checked with the official client.

nacos-sdk-python 2.0.11's `nacos.NacosClient` speaks the v1 HTTP API (register, beat, update,
detail, list, deregister, login); the 3.x SDK's naming client speaks gRPC only. Raw requests check
the v2/v3 shapes the SDK does not use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacos import NacosClient, NacosException  # type: ignore[import-untyped] # ships no types

from tests.fakes.nacos import FakeNacos

IP, PORT = "10.0.0.7", 8080
#: The SDK builds `ssl.SSLContext()` for every request, plain HTTP included.
pytestmark = [
    pytest.mark.filterwarnings("ignore:ssl.SSLContext:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS:DeprecationWarning"),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeNacos]:
    server = FakeNacos()
    await server.start()
    yield server
    await server.close()


async def sdk(fake: FakeNacos, tmp_path: Path, **auth: str) -> Any:
    address = f"127.0.0.1:{fake.server.port}"
    return await asyncio.to_thread(
        NacosClient, server_addresses=address, logDir=str(tmp_path), **auth
    )


async def call(method: str, url: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, params=params) as response,
    ):
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


async def test_the_client_registers_reads_updates_and_deregisters(
    fake: FakeNacos, tmp_path: Path
) -> None:
    client = await sdk(fake, tmp_path)
    assert await asyncio.to_thread(client.add_naming_instance, "web", IP, PORT, "DEFAULT")
    detail = await asyncio.to_thread(client.get_naming_instance, "web", IP, PORT, "DEFAULT")
    assert (detail["service"], detail["ip"], detail["port"]) == ("DEFAULT_GROUP@@web", IP, PORT)
    assert "enabled" not in detail  # the v1 detail does not show it (N6)
    assert await asyncio.to_thread(
        client.modify_naming_instance, "web", IP, PORT, "DEFAULT", enable=False
    )
    listed = await asyncio.to_thread(client.list_naming_instance, "web")
    assert listed["hosts"] == []  # lists hide disabled instances (N7)
    await asyncio.to_thread(client.send_heartbeat, "web", IP, PORT, "DEFAULT")
    seen = fake.seen("web", IP, PORT)
    assert seen is not None
    assert seen.enabled is False  # a beat never touches enabled (N8)
    assert await asyncio.to_thread(client.remove_naming_instance, "web", IP, PORT, "DEFAULT")
    with pytest.raises(NacosException, match="Request Error, code is 404"):
        await asyncio.to_thread(client.get_naming_instance, "web", IP, PORT, "DEFAULT")


async def test_a_beat_brings_back_a_deleted_ephemeral_instance_still_disabled(
    fake: FakeNacos, tmp_path: Path
) -> None:
    client = await sdk(fake, tmp_path)
    await asyncio.to_thread(client.add_naming_instance, "web", IP, PORT, "DEFAULT")
    await asyncio.to_thread(client.modify_naming_instance, "web", IP, PORT, "DEFAULT", enable=False)
    await asyncio.to_thread(client.remove_naming_instance, "web", IP, PORT, "DEFAULT")
    assert fake.seen("web", IP, PORT) is None
    answer = await asyncio.to_thread(client.send_heartbeat, "web", IP, PORT, "DEFAULT")
    assert answer["code"] == 10200
    seen = fake.seen("web", IP, PORT)
    assert seen is not None
    assert seen.enabled is False  # the update's override outlives the deletion (N5)


async def test_a_delete_of_a_missing_instance_answers_ok(fake: FakeNacos) -> None:
    status, body = await call(
        "DELETE", fake.url + "/v1/ns/instance", serviceName="web", ip=IP, port=str(PORT)
    )
    assert (status, body) == (200, "ok")
    status, body = await call(
        "DELETE", fake.url + "/v2/ns/instance", serviceName="web", ip=IP, port=str(PORT)
    )
    assert (status, body) == (200, {"code": 0, "message": "success", "data": "ok"})


async def test_a_missing_instance_detail_is_404_in_each_version_shape(fake: FakeNacos) -> None:
    query = {"serviceName": "web", "ip": IP, "port": str(PORT)}
    status, body = await call("GET", fake.url + "/v1/ns/instance", **query)
    assert (status, body) == (404, "no ips found for cluster DEFAULT in service DEFAULT_GROUP@@web")
    status, body = await call("GET", fake.url + "/v2/ns/instance", **query)
    assert status == 404
    assert (body["code"], body["message"]) == (20004, "resource not found")


async def test_nacos_3_refuses_the_old_admin_api_and_serves_v3(fake: FakeNacos) -> None:
    fake.major = 3
    query = {"serviceName": "web", "ip": IP, "port": str(PORT)}
    status, body = await call("PUT", fake.url + "/v1/ns/instance", **query, enabled="false")
    assert status == 410
    assert '"code": 40000' in body["message"]
    status, body = await call("POST", fake.url + "/v3/client/ns/instance", **query)
    assert (status, body["code"]) == (200, 0)
    status, body = await call("GET", fake.url + "/v3/admin/ns/instance", **query)
    assert (status, body["data"]["enabled"], body["data"]["ephemeral"]) == (200, True, True)
    status, body = await call(
        "POST", fake.url + "/v3/client/ns/instance", **query, heartBeat="true"
    )
    assert body["code"] == 0
    await call("DELETE", fake.url + "/v3/client/ns/instance", **query)
    status, body = await call(
        "POST", fake.url + "/v3/client/ns/instance", **query, heartBeat="true"
    )
    assert (status, body["code"]) == (200, 21003)  # a v3 heartbeat registers nothing (N8)


async def test_nacos_2_has_no_v3_path(fake: FakeNacos) -> None:
    status, body = await call("GET", fake.url + "/v3/admin/ns/instance", serviceName="web")
    assert (status, body["error"]) == (404, "Not Found")


async def test_the_client_logs_in_and_an_expired_token_is_refused(
    fake: FakeNacos, tmp_path: Path
) -> None:
    fake.users = {"nacos": "s3cret"}
    client = await sdk(fake, tmp_path, username="nacos", password="s3cret")
    assert fake.logins == 1
    assert await asyncio.to_thread(client.add_naming_instance, "web", IP, PORT, "DEFAULT")
    status, body = await call("GET", fake.url + "/v1/ns/instance/list", serviceName="web")
    assert (status, body["message"]) == (403, "token invalid!")
    fake.expire_tokens()
    with pytest.raises(NacosException, match="Insufficient privilege"):
        await asyncio.to_thread(client.add_naming_instance, "web", IP, PORT, "DEFAULT")
    status, body = await call("POST", fake.url + "/v1/auth/login", username="nacos", password="x")
    assert status == 403
