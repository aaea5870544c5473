"""Pins the Eureka fake to the real server's answers it claims (its docstring cites them)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest

from tests.fakes.eureka import FakeEureka

JSON = {"Accept": "application/json"}
INSTANCE = {
    "instanceId": "10.0.0.7:web:8080",
    "hostName": "web-1",
    "app": "WEB",
    "ipAddr": "10.0.0.7",
    "status": "UP",
    "overriddenstatus": "UNKNOWN",
    "port": {"$": 8080, "@enabled": "true"},
    "dataCenterInfo": {
        "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
        "name": "MyOwn",
    },
}
ONE = "/apps/web/10.0.0.7:web:8080"


@pytest.fixture
async def eureka() -> AsyncIterator[FakeEureka]:
    server = FakeEureka()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(
    http: aiohttp.ClientSession,
    server: FakeEureka,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> tuple[int, str]:
    async with http.request(method, server.url() + path, headers=headers, **kw) as response:
        return response.status, await response.text()


async def _register(
    http: aiohttp.ClientSession, server: FakeEureka, **changes: Any
) -> tuple[int, str]:
    return await _call(http, server, "POST", "/apps/web", json={"instance": INSTANCE | changes})


async def test_register_answers_204_and_the_instance_reads_back_as_json(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    assert await _register(http, eureka) == (204, "")
    status, body = await _call(http, eureka, "GET", ONE, JSON)
    assert status == 200
    assert '"instance": {"instanceId": "10.0.0.7:web:8080"' in body
    assert '"overriddenStatus": "UNKNOWN"' in body


async def test_a_registration_lacking_a_field_or_of_another_app_is_400(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    assert await _register(http, eureka, ipAddr="") == (400, "Missing ip address")
    assert await _register(http, eureka, app="SHOP") == (
        400,
        "Mismatched appName, expecting WEB but was SHOP",
    )
    assert eureka.apps == {}


async def test_reads_are_xml_by_default_and_406_for_an_unknown_type(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    await _register(http, eureka)
    status, body = await _call(http, eureka, "GET", ONE)
    assert status == 200
    root = ET.fromstring(body)  # noqa: S314 # our own fake's answer, not untrusted data
    assert (root.tag, root.findtext("status"), root.findtext("overriddenstatus")) == (
        "instance",
        "UP",
        "UNKNOWN",
    )
    assert root.find("port") is not None
    assert root.find("port").attrib == {"enabled": "true"}  # type: ignore[union-attr]
    assert (await _call(http, eureka, "GET", ONE, {"Accept": "text/plain"}))[0] == 406


async def test_a_heartbeat_is_200_when_known_and_404_when_not(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    assert (await _call(http, eureka, "PUT", ONE + "?status=UP"))[0] == 404
    await _register(http, eureka)
    assert (await _call(http, eureka, "PUT", ONE + "?status=UP"))[0] == 200


async def test_an_override_survives_heartbeats_and_re_registration(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    await _register(http, eureka)
    assert (await _call(http, eureka, "PUT", ONE + "/status?value=OUT_OF_SERVICE"))[0] == 200
    await _call(http, eureka, "PUT", ONE + "?status=UP")
    await _register(http, eureka, status="UP")
    instance = eureka.instance("web", "10.0.0.7:web:8080")
    assert instance is not None
    assert (instance["status"], instance["overriddenStatus"]) == (
        "OUT_OF_SERVICE",
        "OUT_OF_SERVICE",
    )
    assert (await _call(http, eureka, "DELETE", ONE + "/status?value=UP"))[0] == 200
    assert instance["status"] == "UP"


async def test_an_override_of_an_unknown_instance_is_404_and_a_bad_value_500(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    assert (await _call(http, eureka, "PUT", ONE + "/status?value=OUT_OF_SERVICE"))[0] == 404
    await _register(http, eureka)
    assert (await _call(http, eureka, "PUT", ONE + "/status?value=GONE"))[0] == 500


async def test_a_delete_is_200_then_404_and_drops_the_override(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    await _register(http, eureka)
    await _call(http, eureka, "PUT", ONE + "/status?value=OUT_OF_SERVICE")
    assert (await _call(http, eureka, "DELETE", ONE))[0] == 200
    assert (await _call(http, eureka, "DELETE", ONE))[0] == 404
    assert (await _call(http, eureka, "GET", ONE, JSON))[0] == 404
    await _register(http, eureka)
    instance = eureka.instance("WEB", "10.0.0.7:web:8080")
    assert instance is not None
    assert instance["status"] == "UP"


async def test_the_app_reads_back_with_its_instances(
    eureka: FakeEureka, http: aiohttp.ClientSession
) -> None:
    assert (await _call(http, eureka, "GET", "/apps/web", JSON))[0] == 404
    await _register(http, eureka)
    status, body = await _call(http, eureka, "GET", "/apps/web", JSON)
    assert status == 200
    assert body.startswith('{"application": {"name": "WEB", "instance": [{"instanceId"')


async def test_writes_replicate_to_peers_except_one_that_misses_them(
    http: aiohttp.ClientSession,
) -> None:
    a, b, c = FakeEureka(), FakeEureka(), FakeEureka()
    a.peers = [b, c]
    c.missing_replication = True
    await a.start()
    try:
        await _register(http, a)
        await _call(http, a, "PUT", ONE + "/status?value=OUT_OF_SERVICE")
        instance = b.instance("WEB", "10.0.0.7:web:8080")
        assert instance is not None
        assert instance["status"] == "OUT_OF_SERVICE"
        assert c.apps == {}
        await _call(http, a, "DELETE", ONE)
        assert b.apps == {"WEB": {}}
    finally:
        await a.close()


async def test_faults_answer_503_keep_a_deleted_instance_or_ask_for_credentials(
    http: aiohttp.ClientSession,
) -> None:
    eureka = FakeEureka(credentials=("sidecar", "s3cret"))
    await eureka.start()
    try:
        assert (await _call(http, eureka, "GET", ONE, JSON))[0] == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"sidecar:s3cret").decode()}
        eureka.seed("web", "10.0.0.7:web:8080")
        eureka.fail_next, eureka.sticky_deletes = 1, 1
        assert (await _call(http, eureka, "DELETE", ONE, auth))[0] == 503
        assert (await _call(http, eureka, "DELETE", ONE, auth))[0] == 200
        assert eureka.instance("web", "10.0.0.7:web:8080") is not None
        assert [s for _, _, s in eureka.log] == [401, 503, 200]
    finally:
        await eureka.close()
