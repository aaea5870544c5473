"""Pins the facts the Consul fake copies (its docstring's CS1-CS10), via py-consul and raw HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import consul  # type: ignore[import-untyped]  # py-consul ships no type hints
import pytest

from tests.fakes.consul import FakeConsul


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    server = FakeConsul()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def app(fake: FakeConsul) -> Iterator[consul.Consul]:
    client = consul.Consul(host="127.0.0.1", port=fake.server.port)
    yield client
    client.http.session.close()


async def _register(app: consul.Consul, service_id: str = "web-1", ttl: str = "10s") -> None:
    check = consul.Check.ttl(ttl)
    await asyncio.to_thread(app.agent.service.register, "web", service_id=service_id, check=check)


async def _passing(app: consul.Consul) -> list[str]:
    _, entries = await asyncio.to_thread(app.health.service, "web", passing=True)
    return [e["Service"]["ID"] for e in entries]


async def _put(fake: FakeConsul, path: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.put(fake.address() + path, **kw) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def _get(fake: FakeConsul, path: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.address() + path, **kw) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def test_a_ttl_check_starts_critical_and_a_pass_makes_the_instance_healthy(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app)
    check = fake.services["web-1"].checks["service:web-1"]
    assert (check.name, check.status) == ("Service 'web' check", "critical")
    assert await _passing(app) == []
    assert await asyncio.to_thread(app.agent.check.ttl_pass, "service:web-1") is True
    assert await _passing(app) == ["web-1"]
    check.expires_at = 0.0  # as if the TTL went by without a pass
    assert await _passing(app) == []
    assert check.output == "TTL expired"


async def test_a_pass_for_an_unknown_check_is_404(fake: FakeConsul) -> None:
    status, body, _ = await _put(fake, "/v1/agent/check/pass/service:nope")
    assert (status, body) == (
        404,
        'Unknown check ID "service:nope". Ensure that the check ID is passed, not the check name.',
    )


async def test_maintenance_makes_the_service_critical_and_ttl_passes_do_not_undo_it(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app)
    await asyncio.to_thread(app.agent.check.ttl_pass, "service:web-1")
    status, _, _ = await _put(fake, "/v1/agent/service/maintenance/web-1?enable=true&reason=bye")
    assert status == 200
    await asyncio.to_thread(app.agent.check.ttl_pass, "service:web-1")
    assert await _passing(app) == []
    _, [entry] = await asyncio.to_thread(app.health.service, "web")
    maintenance = {c["CheckID"]: c for c in entry["Checks"]}["_service_maintenance:web-1"]
    assert (maintenance["Name"], maintenance["Status"], maintenance["Notes"]) == (
        "Service Maintenance Mode",
        "critical",
        "bye",
    )


async def test_maintenance_needs_enable_and_a_known_service(fake: FakeConsul) -> None:
    assert (await _put(fake, "/v1/agent/service/maintenance/web-1"))[:2] == (
        400,
        "Missing value for enable",
    )
    status, body, _ = await _put(fake, "/v1/agent/service/maintenance/web-1?enable=true")
    assert status == 404
    assert body.startswith('Unknown service ID "web-1"')


async def test_agent_deregistration_removes_the_service_from_agent_and_catalog(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app)
    assert await asyncio.to_thread(app.agent.service.deregister, "web-1") is True
    assert await asyncio.to_thread(app.agent.services) == {}
    _, entries = await asyncio.to_thread(app.catalog.service, "web")
    assert entries == []
    status, body, _ = await _put(fake, "/v1/agent/service/deregister/web-1")
    assert (status, body) == (
        404,
        'Unknown service ID "web-1". Ensure that the service ID is passed, not the service name.',
    )


async def test_anti_entropy_brings_back_what_only_the_catalog_lost(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app)
    assert await asyncio.to_thread(app.catalog.deregister, fake.node_name, "web-1") is True
    _, entries = await asyncio.to_thread(app.catalog.service, "web")
    assert entries == []
    fake.sync()
    _, entries = await asyncio.to_thread(app.catalog.service, "web")
    assert [(e["Node"], e["ServiceID"]) for e in entries] == [("k8s-node-1", "web-1")]


async def test_periodic_anti_entropy_runs_on_its_interval() -> None:
    fake = FakeConsul(sync_interval_seconds=0.01)
    await fake.start()
    try:
        assert not fake.synced.is_set()
        async with asyncio.timeout(2):
            await fake.synced.wait()
    finally:
        await fake.stop()
    assert fake.index >= 2


async def test_a_catalog_deregistration_answers_true_even_for_nothing(fake: FakeConsul) -> None:
    status, body, _ = await _put(
        fake, "/v1/catalog/deregister", json={"Node": "k8s-node-1", "ServiceID": "none"}
    )
    assert (status, body) == (200, "true")
    status, body, _ = await _put(fake, "/v1/catalog/deregister", json={"ServiceID": "none"})
    assert (status, body) == (500, "Must provide node")


async def test_catalog_reads_filter_by_service_id_and_refuse_other_filters(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app, "web-1")
    await _register(app, "web-2")
    status, body, headers = await _get(
        fake, "/v1/catalog/service/web", params={"filter": 'ServiceID == "web-2"'}
    )
    assert status == 200
    assert '"ServiceID": "web-2"' in body
    assert "web-1" not in body
    assert "X-Consul-Index" in headers
    status, _, _ = await _get(fake, "/v1/catalog/service/web", params={"filter": "Node != x"})
    assert status == 400


async def test_acl_filtered_reads_say_so_only_to_a_request_with_a_token(
    fake: FakeConsul, app: consul.Consul
) -> None:
    await _register(app)
    fake.acl_hidden.add("web-1")
    _, body, headers = await _get(fake, "/v1/catalog/service/web", headers={"X-Consul-Token": "t"})
    assert (body, headers["X-Consul-Results-Filtered-By-ACLs"]) == ("[]", "true")
    _, body, headers = await _get(fake, "/v1/catalog/service/web")
    assert body == "[]"
    assert "X-Consul-Results-Filtered-By-ACLs" not in headers
    _, _, headers = await _get(fake, "/v1/agent/services", headers={"X-Consul-Token": "t"})
    assert headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        ("?ns=a", {}, 'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'),
        (
            "?partition=a",
            {},
            'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature',
        ),
        (
            "",
            {"X-Consul-Namespace": "a"},
            'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature',
        ),
    ],
)
async def test_community_edition_refuses_namespaces_and_partitions(
    fake: FakeConsul, query: str, headers: dict[str, str], message: str
) -> None:
    status, body, _ = await _get(fake, "/v1/catalog/service/web" + query, headers=headers)
    assert (status, body) == (400, message)


async def test_enterprise_accepts_a_namespace() -> None:
    fake = FakeConsul(enterprise=True)
    await fake.start()
    try:
        status, body, _ = await _get(fake, "/v1/catalog/service/web?ns=a")
    finally:
        await fake.stop()
    assert (status, body) == (200, "[]")


async def test_agent_self_names_the_node(fake: FakeConsul, app: consul.Consul) -> None:
    me = await asyncio.to_thread(app.agent.self)
    assert (me["Config"]["NodeName"], me["Config"]["Datacenter"]) == ("k8s-node-1", "dc1")


async def test_faults_fail_drop_and_stop(fake: FakeConsul) -> None:
    fake.fail_next = 1
    assert (await _get(fake, "/v1/agent/self"))[:2] == (
        500,
        "rpc error making call: No cluster leader",
    )
    fake.drop = True
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _get(fake, "/v1/agent/self")
    fake.drop = False
    address = fake.address()
    await fake.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with aiohttp.ClientSession() as session, session.get(address + "/v1/agent/self"):
            pass
