"""Pins the Consul registry over loopback HTTP to the fake agent, with py-consul as the live app.

Announce and Retire (sidecar/shutdown/registries.py) drive the back end, so each outcome is the
one the report shows; py-consul, the official Python client, registers, heartbeats and reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import consul  # type: ignore[import-untyped]  # py-consul ships no type hints
import pytest

from sidecar.adapters.registries.consul import ConsulRegistry
from sidecar.errors import AdapterError, ConfigError
from sidecar.model.http_action import Identity
from sidecar.model.registry import Presence
from sidecar.model.report import Outcome
from sidecar.settings.reader import Reader
from sidecar.settings.registries import RetrySettings
from sidecar.settings.registry_consul import ConsulRegistrySettings
from sidecar.shutdown.registries import Announce, Retire
from tests.fakes.consul import FakeConsul

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))
FAST = RetrySettings(first_seconds=0.01, max_seconds=0.02, attempts=3)
Make = Callable[..., ConsulRegistry]


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    server = FakeConsul()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def app(fake: FakeConsul) -> Iterator[consul.Consul]:
    """The live app's client: registers `web-1` with a TTL check."""
    client = consul.Consul(host="127.0.0.1", port=fake.server.port)
    yield client
    client.http.session.close()


@pytest.fixture
async def make(fake: FakeConsul) -> AsyncIterator[Make]:
    made: list[ConsulRegistry] = []

    def build(**changes: Any) -> ConsulRegistry:
        fields: dict[str, Any] = {"name": "consul", "service": "web", "address": fake.address()}
        registry = ConsulRegistry(ConsulRegistrySettings(**{**fields, **changes}), POD, key="r[0]")
        made.append(registry)
        return registry

    yield build
    for registry in made:
        await registry.close()


async def _register(app: consul.Consul) -> None:
    check = consul.Check.ttl("10s")
    await asyncio.to_thread(app.agent.service.register, "web", service_id="web-1", check=check)
    assert await asyncio.to_thread(app.agent.check.ttl_pass, "service:web-1") is True


async def _passing(app: consul.Consul) -> list[str]:
    _, entries = await asyncio.to_thread(app.health.service, "web", passing=True)
    return [e["Service"]["ID"] for e in entries]


async def _in_catalog(app: consul.Consul) -> list[str]:
    _, entries = await asyncio.to_thread(app.catalog.service, "web")
    return [e["ServiceID"] for e in entries]


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def _entry(result: Any) -> dict[str, Any]:
    entry: dict[str, Any] = result.detail["registries"]["consul"]
    return entry


async def test_announce_puts_the_instance_in_maintenance_that_ttl_passes_cannot_undo(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    assert await _passing(app) == ["web-1"]
    result = await Announce([make(maintenance_reason="draining")]).run(_deadline())
    assert (result.outcome, _entry(result)["outcome"]) == (Outcome.OK, "marked_down")
    assert await asyncio.to_thread(app.agent.check.ttl_pass, "service:web-1") is True
    assert await _passing(app) == []
    _, [entry] = await asyncio.to_thread(app.health.service, "web")
    statuses = {c["CheckID"]: (c["Status"], c["Notes"]) for c in entry["Checks"]}
    assert statuses["_service_maintenance:web-1"] == ("critical", "draining")
    assert statuses["service:web-1"][0] == "passing"


async def test_marking_down_an_id_the_agent_does_not_hold_is_an_error_naming_it(
    fake: FakeConsul, make: Make
) -> None:
    result = await Announce([make(service_id="{pod.namespace}-{pod.name}")], backoff=FAST).run(
        _deadline()
    )
    assert result.outcome is Outcome.ERROR
    assert 'HTTP 404: Unknown service ID "shop-web-1"' in _entry(result)["error"]


async def test_retire_deregisters_through_the_agent_and_reads_it_gone(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    result = await Retire([make()]).run(_deadline())
    assert (result.outcome, _entry(result)["outcome"]) == (Outcome.OK, "removed")
    assert fake.log[-2:] == [
        ("PUT", "/v1/agent/service/deregister/web-1"),
        ("GET", "/v1/catalog/service/web"),
    ]
    assert await _in_catalog(app) == []
    assert await asyncio.to_thread(app.agent.services) == {}


async def test_an_instance_absent_from_the_start_is_already_absent(
    fake: FakeConsul, make: Make
) -> None:
    result = await Retire([make()]).run(_deadline())
    entry = _entry(result)
    assert (entry["deregister"], entry["read"], entry["outcome"]) == (
        "gone",
        "absent",
        "already_absent",
    )


async def test_an_entry_the_agent_dropped_but_the_catalog_kept_is_forced_on_the_agents_node(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.sync_fails = True  # the agent's sync to the servers fails: the catalog keeps it
    result = await Retire([make()]).run(_deadline())
    entry = _entry(result)
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "present",
        "ok",
        "absent",
    )
    assert (result.outcome, entry["outcome"]) == (Outcome.OK, "forced")
    assert ("GET", "/v1/agent/self") in fake.log
    assert await _in_catalog(app) == []


async def test_a_configured_node_name_is_used_without_asking_the_agent(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.sync_fails = True
    result = await Retire([make(node_name="k8s-node-1")]).run(_deadline())
    assert _entry(result)["outcome"] == "forced"
    assert ("GET", "/v1/agent/self") not in fake.log


async def test_when_the_catalog_refuses_the_force_the_entry_is_still_present(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.sync_fails = fake.deny_catalog_writes = True
    result = await Retire([make()], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["force"], entry["read_again"], entry["outcome"]) == (
        "failed",
        "present",
        "still_present",
    )
    assert "force PUT /v1/catalog/deregister: HTTP 403: Permission denied" in entry["error"]
    assert result.outcome is Outcome.ERROR
    assert await _in_catalog(app) == ["web-1"]


async def test_without_force_a_lingering_entry_is_still_present(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.sync_fails = True
    registry = make(force_remove=False)
    assert not registry.can_force
    result = await Retire([registry]).run(_deadline())
    assert _entry(result)["outcome"] == "still_present"
    assert ("PUT", "/v1/catalog/deregister") not in fake.log


async def test_the_app_re_registering_after_the_delete_comes_back_through_anti_entropy(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    """The app still lives: it re-registers; the catalog force is undone by the agent's sync."""
    await _register(app)

    async def app_registers_again() -> None:
        await _register(app)

    async def anti_entropy() -> None:
        fake.sync()

    fake.after["deregister"] = app_registers_again
    fake.after["catalog_deregister"] = anti_entropy
    result = await Retire([make()], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "present",
        "ok",
        "present",
    )
    assert (result.outcome, entry["outcome"]) == (Outcome.ERROR, "still_present")
    assert await _in_catalog(app) == ["web-1"]
    assert list(await asyncio.to_thread(app.agent.services)) == ["web-1"]


async def test_a_partition_between_deregister_and_read_back_proves_nothing(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)

    async def partition() -> None:
        fake.drop = True

    fake.after["deregister"] = partition
    result = await Retire([make()], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("ok", "unknown", "error")
    assert "ServerDisconnectedError" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_a_stopped_agent_ends_in_error_within_the_attempts(
    fake: FakeConsul, make: Make
) -> None:
    registry = make()
    await fake.stop()
    result = await Retire([registry], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("failed", "unknown", "error")
    assert "ClientConnectorError" in entry["error"]
    assert entry["attempts"] == 4 * FAST.attempts


async def test_a_slow_agent_is_cut_at_the_deadline(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.delay_seconds = 30.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    result = await Retire([make(timeout_seconds=5.0)]).run(deadline)
    assert loop.time() == pytest.approx(deadline, abs=0.2)
    assert result.outcome is Outcome.TIMED_OUT
    assert _entry(result)["timed_out"] is True


async def test_a_5xx_is_retried_until_the_agent_answers(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    fake.fail_next = 2
    result = await Retire([make()], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["outcome"], entry["attempts"]) == ("removed", 4)


async def test_an_acl_filtered_read_is_unknown_never_absent(
    fake: FakeConsul, app: consul.Consul, make: Make, tmp_path: Path
) -> None:
    await _register(app)
    token = tmp_path / "token"
    token.write_text("reader-token\n")
    fake.sync_fails = True  # still in the catalog, but the token cannot see it
    fake.acl_hidden.add("web-1")
    registry = make(token_file=str(token), force_remove=False)
    with pytest.raises(AdapterError, match="X-Consul-Results-Filtered-By-ACLs: true"):
        await registry.is_present(_deadline())
    result = await Retire([registry], backoff=FAST).run(_deadline())
    entry = _entry(result)
    assert (entry["read"], entry["outcome"]) == ("unknown", "error")
    assert "absence is not proven" in entry["error"]
    assert set(fake.tokens[-2:]) == {"reader-token"}


async def test_a_namespace_on_community_edition_is_an_error_naming_the_key(
    fake: FakeConsul, app: consul.Consul, make: Make
) -> None:
    await _register(app)
    result = await Announce([make(namespace="team-a")], backoff=FAST).run(_deadline())
    error = _entry(result)["error"]
    assert "HTTP 400 (r[0].namespace is set: Community Edition has no namespaces)" in error
    assert "Namespaces are a Consul Enterprise feature" in error
    assert await _passing(app) == ["web-1"]


async def test_a_namespace_and_partition_reach_enterprise(make: Make) -> None:
    enterprise = FakeConsul(enterprise=True)
    await enterprise.start()
    try:
        registry = make(address=enterprise.address(), namespace="team-a", partition="p1")
        assert await registry.is_present(_deadline()) is Presence.ABSENT
    finally:
        await enterprise.stop()


async def test_the_token_file_is_read_at_each_call_and_its_errors_name_the_key(
    fake: FakeConsul, app: consul.Consul, make: Make, tmp_path: Path
) -> None:
    await _register(app)
    token = tmp_path / "token"
    token.write_text("first\n")
    registry = make(token_file=str(token))
    await registry.mark_down(_deadline())
    token.write_text("second")
    assert await registry.is_present(_deadline()) is Presence.PRESENT
    assert fake.tokens[-2:] == ["first", "second"]
    token.write_text("two\nlines")
    with pytest.raises(AdapterError, match=r"r\[0\]\.token_file .* not one visible line") as e:
        await registry.deregister(_deadline())
    assert "two" not in str(e.value)


async def test_nothing_connects_before_the_first_call(fake: FakeConsul, make: Make) -> None:
    registry = make()
    assert not registry._http.opened
    await registry.close()
    assert fake.log == []


@pytest.mark.parametrize(
    ("service_id", "message"),
    [
        ("{pod.labels[app]}", r"^r\[0\]\.service_id: the pod has no label 'app'"),
        ("{pod.hostname}", r"^r\[0\]\.service_id: unknown placeholder \{pod.hostname\}"),
        ("web/{pod.name}", r"^r\[0\]\.service_id: a service ID cannot hold '/'"),
    ],
)
def test_a_service_id_this_pod_cannot_fill_is_a_config_error(service_id: str, message: str) -> None:
    settings = ConsulRegistrySettings(name="consul", service="web", service_id=service_id)
    with pytest.raises(ConfigError, match=message):
        ConsulRegistry(settings, POD, key="r[0]")


def test_the_settings_read_from_a_mapping_with_defaults_and_errors_naming_keys() -> None:
    reader = Reader({})
    data = {"kind": "consul", "name": "consul", "service": "web", "service_id": "web-{pod.ip}"}
    settings = reader.read(ConsulRegistrySettings, data, "registries[0]")
    assert reader.errors == {}
    assert settings == ConsulRegistrySettings(
        name="consul", service="web", service_id="web-{pod.ip}"
    )
    assert (settings.address, settings.token_file, settings.force_remove) == (
        "http://127.0.0.1:8500",
        "",
        True,
    )
    assert ConsulRegistry(settings, POD, key="registries[0]").service_id == "web-10.0.0.7"
    bad = {"name": "c", "service": "", "service_id": "{pod.host}", "address": "consul:8500"}
    reader.read(ConsulRegistrySettings, bad, "registries[1]")
    assert set(reader.errors) == {
        "registries[1].service",
        "registries[1].service_id",
        "registries[1].address",
    }
    assert "got {pod.host}" in reader.errors["registries[1].service_id"]
