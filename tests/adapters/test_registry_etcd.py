"""Pins the etcd back end on a real etcd 3.4: leases, prefixes, re-registration, auth, faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.adapters.registries.etcd import EtcdRegistry, prefix_end
from sidecar.errors import ConfigError
from sidecar.model.http_action import Identity
from sidecar.model.registry import Answer, Presence
from sidecar.model.report import Outcome
from sidecar.settings.reader import Reader
from sidecar.settings.registries import RetrySettings
from sidecar.settings.registry_etcd import EtcdRegistrySettings
from sidecar.shutdown.registries import Announce, Retire
from tests.servers.etcd import EtcdServer, Gateway, running_etcd

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.1.0.7",))
KEY = "/services/web/10.1.0.7:8080"
FAST = RetrySettings(first_seconds=0.05, max_seconds=0.1, attempts=3)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path) as server:
        yield server


@pytest.fixture
async def gateway(etcd: EtcdServer) -> AsyncIterator[Gateway]:
    client = Gateway(etcd.url)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def registry(etcd: EtcdServer, **fields: Any) -> AsyncIterator[EtcdRegistry]:
    fields.setdefault("key", "/services/web/{pod.ip}:8080")
    settings = EtcdRegistrySettings(name="etcd", endpoints=(etcd.url,), **fields)
    backend = EtcdRegistry(settings, POD, key="registries[0]")
    try:
        yield backend
    finally:
        await backend.close()


def deadline_in(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def keep_alive(gateway: Gateway, lease: int, lost: asyncio.Event) -> None:
    """A live app's keep-alive: refresh the lease until etcd says it is gone."""
    while await gateway.keep_alive(lease) > 0:
        await asyncio.sleep(0.05)  # the app's keep-alive interval
    lost.set()


class _App:
    """A well-behaved client: keeps its lease alive and, once, re-registers under a new one."""

    def __init__(self, gateway: Gateway, key: str) -> None:
        self.gateway, self.key = gateway, key
        self.registered, self.reregistered = asyncio.Event(), asyncio.Event()
        self.leases: list[int] = []

    async def run(self) -> None:
        for _ in range(2):
            lease = await self.gateway.grant()
            self.leases.append(lease)
            await self.gateway.put(self.key, "up", lease)
            (self.reregistered if self.registered.is_set() else self.registered).set()
            await keep_alive(self.gateway, lease, asyncio.Event())


class _AfterDeregister:
    """The back end, with something happening between its deregister and the first read."""

    def __init__(self, inner: EtcdRegistry, then: Any) -> None:
        self.inner, self.then = inner, then
        self.name, self.can_mark_down, self.can_force = inner.name, False, inner.can_force

    async def mark_down(self, deadline: float) -> None:
        await self.inner.mark_down(deadline)

    async def deregister(self, deadline: float) -> Answer:
        answer = await self.inner.deregister(deadline)
        await self.then()
        return answer

    async def is_present(self, deadline: float) -> Presence:
        return await self.inner.is_present(deadline)

    async def force_remove(self, deadline: float) -> None:
        await self.inner.force_remove(deadline)


# Settings and construction (no server).


def test_the_settings_read_from_a_dict_with_defaults() -> None:
    reader = Reader({})
    data = {
        "kind": "etcd",
        "name": "etcd",
        "endpoints": ["http://etcd:2379/"],
        "prefix": "/s/{pod.ip}:",
    }
    settings = reader.read(EtcdRegistrySettings, data, "registries[0]")
    assert reader.errors == {}
    assert settings == EtcdRegistrySettings(
        name="etcd", endpoints=("http://etcd:2379",), prefix="/s/{pod.ip}:"
    )
    assert (settings.api_prefix, settings.revoke_leases, settings.timeout_seconds) == (
        "/v3",
        True,
        2.0,
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("key", "/services/web", "a key naming the pod"),
        ("prefix", "/services/web/{pod.ip}", "followed by a delimiter"),
        ("api_prefix", "/v3alpha", "one of /v3, /v3beta"),
        ("key", "/s/{pod.hostname}", "placeholders among"),
    ],
)
def test_a_key_shared_by_replicas_or_an_open_ended_prefix_is_refused(
    field: str, value: str, expected: str
) -> None:
    reader = Reader({})
    data = {"kind": "etcd", "name": "e", "endpoints": ["http://etcd:2379"], field: value}
    reader.read(EtcdRegistrySettings, data, "registries[0]")
    assert expected in reader.errors[f"registries[0].{field}"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"key": "/a/{pod.ip}", "prefix": "/a/{pod.ip}/"},
            "registries[2].key: expected exactly one",
        ),
        ({}, "registries[2].key: expected exactly one of key and prefix, got neither"),
        ({"key": "/a/{pod.ip}", "username": "root"}, "registries[2].password_file"),
        ({"key": "/a/{pod.labels[app]}"}, "registries[2].key: the pod has no label 'app'"),
    ],
)
def test_what_this_pod_cannot_fill_is_a_config_error_naming_the_key(
    fields: dict[str, Any], expected: str
) -> None:
    settings = EtcdRegistrySettings(name="e", endpoints=("http://etcd:2379",), **fields)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        EtcdRegistry(settings, POD, key="registries[2]")


def test_a_prefix_range_ends_after_its_last_byte_that_can_grow() -> None:
    assert prefix_end(b"/web/10.1.0.7:") == b"/web/10.1.0.7;"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


# Retire against the real etcd.


async def test_a_kept_alive_key_is_removed_and_its_lease_revoked(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    lease, lost = await gateway.grant(), asyncio.Event()
    await gateway.put(KEY, "up", lease)
    app = asyncio.create_task(keep_alive(gateway, lease, lost))
    try:
        async with registry(etcd) as backend:
            result = await Retire([backend]).run(deadline_in())
        async with asyncio.timeout(5):
            await lost.wait()  # the app's next keep-alive finds no lease
    finally:
        app.cancel()
        await asyncio.gather(app, return_exceptions=True)
    entry = result.detail["registries"]["etcd"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("ok", "absent", "removed")
    assert result.outcome is Outcome.OK
    assert await gateway.keys("/services/") == {}
    assert not await gateway.lease_alive(lease)


async def test_a_key_that_is_not_there_is_already_absent(etcd: EtcdServer) -> None:
    async with registry(etcd) as backend:
        result = await Retire([backend]).run(deadline_in())
    entry = result.detail["registries"]["etcd"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == (
        "gone",
        "absent",
        "already_absent",
    )


async def test_every_key_under_a_prefix_goes_and_a_longer_ip_stays(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    shared, own = await gateway.grant(), await gateway.grant()
    await gateway.put("/dubbo/web/providers/10.1.0.7:20880/a", "x", shared)
    await gateway.put("/dubbo/web/providers/10.1.0.7:20880/b", "x", own)
    await gateway.put("/dubbo/web/providers/10.1.0.7:20880/c", "x")  # no lease
    await gateway.put("/dubbo/web/providers/10.1.0.70:20880/a", "x")  # another pod
    async with registry(etcd, key="", prefix="/dubbo/web/providers/{pod.ip}:20880/") as backend:
        result = await Retire([backend]).run(deadline_in())
    assert result.detail["registries"]["etcd"]["outcome"] == "removed"
    assert await gateway.keys("/dubbo/") == {"/dubbo/web/providers/10.1.0.70:20880/a": 0}
    assert not await gateway.lease_alive(shared)
    assert not await gateway.lease_alive(own)


async def test_an_app_that_re_registers_after_the_delete_is_forced_out(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    app = _App(gateway, KEY)
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(5):
            await app.registered.wait()

        async def re_registered() -> None:
            async with asyncio.timeout(5):
                await app.reregistered.wait()

        async with registry(etcd) as backend:
            result = await Retire([_AfterDeregister(backend, re_registered)]).run(deadline_in())
        async with asyncio.timeout(5):
            await task  # its second lease was revoked too: the app gave up
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    entry = result.detail["registries"]["etcd"]
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "present",
        "ok",
        "absent",
    )
    assert entry["outcome"] == "forced"
    assert await gateway.keys("/services/") == {}


async def test_without_force_a_re_registered_key_is_still_present(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    await gateway.put(KEY)

    async def re_put() -> None:
        await gateway.put(KEY, "up", await gateway.grant())

    async with registry(etcd, force_remove=False) as backend:
        result = await Retire([_AfterDeregister(backend, re_put)], backoff=FAST).run(deadline_in())
    entry = result.detail["registries"]["etcd"]
    assert (entry["read"], entry["outcome"]) == ("present", "still_present")
    assert result.outcome is Outcome.ERROR


async def test_mark_down_writes_a_key_the_keep_alive_cannot_undo_and_retire_removes_it(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    lease = await gateway.grant()
    await gateway.put(KEY, "up", lease)
    fields = {"mark_down_key": "/status/web/{pod.name}", "mark_down_value": "down {pod.ip}"}
    async with registry(etcd, **fields) as backend:
        assert backend.can_mark_down
        announced = await Announce([backend]).run(deadline_in())
        assert announced.detail["registries"]["etcd"]["outcome"] == "marked_down"
        assert await gateway.keys("/status/") == {"/status/web/web-1": 0}
        assert await gateway.keep_alive(lease) > 0
        result = await Retire([backend]).run(deadline_in())
    assert result.detail["registries"]["etcd"]["outcome"] == "removed"
    assert await gateway.keys("/status/") == {}
    assert await gateway.keys("/services/") == {}


async def test_without_a_mark_down_key_announce_says_unsupported(etcd: EtcdServer) -> None:
    async with registry(etcd) as backend:
        result = await Announce([backend]).run(deadline_in())
    assert result.detail["registries"]["etcd"] == {"outcome": "unsupported"}
    assert result.outcome is Outcome.SKIPPED


async def test_with_auth_a_refused_token_is_renewed_from_the_password_file(
    etcd: EtcdServer, gateway: Gateway, tmp_path: Path
) -> None:
    await gateway.enable_auth("first")
    secret = tmp_path / "password"
    secret.write_text("first\n")
    await gateway.put(KEY)
    async with registry(etcd, username="root", password_file=str(secret)) as backend:
        assert (await Retire([backend]).run(deadline_in())).outcome is Outcome.OK
        first = backend._token
        assert first
        # A password change invalidates every token of the user (the Secret is rotated with it).
        await gateway.post("/auth/user/changepw", {"name": "root", "password": "second"})
        secret.write_text("second\n")
        gateway.token = ""  # the test's own token went too
        answer = await gateway.post("/auth/authenticate", {"name": "root", "password": "second"})
        gateway.token = answer["token"]
        await gateway.put(KEY)
        result = await Retire([backend]).run(deadline_in())
        assert result.detail["registries"]["etcd"]["outcome"] == "removed"
        assert backend._token not in {None, "", first}
        # A token etcd never issued (its answer: 401, gRPC Unauthenticated) is renewed the same way.
        backend._token = "forged.1"
        assert await backend.is_present(deadline_in()) is Presence.ABSENT
    assert await gateway.keys("/services/") == {}


async def test_a_user_configured_for_a_cluster_without_auth_goes_without_a_token(
    etcd: EtcdServer, gateway: Gateway, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("unused")
    await gateway.put(KEY)
    async with registry(etcd, username="root", password_file=str(secret)) as backend:
        result = await Retire([backend]).run(deadline_in())
        assert backend._token == ""
    assert result.detail["registries"]["etcd"]["outcome"] == "removed"


async def test_a_wrong_password_is_an_error_that_does_not_show_it(
    etcd: EtcdServer, gateway: Gateway, tmp_path: Path
) -> None:
    await gateway.enable_auth("right")
    secret = tmp_path / "password"
    secret.write_text("wrong-password-value")
    once = RetrySettings(attempts=1)
    async with registry(etcd, username="root", password_file=str(secret)) as backend:
        result = await Retire([backend], backoff=once).run(deadline_in())
    entry = result.detail["registries"]["etcd"]
    assert entry["outcome"] == "error"
    assert "authentication failed" in entry["error"]
    assert "wrong-password-value" not in str(result.detail)


async def test_a_dead_endpoint_is_passed_over_for_the_next(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    await gateway.put(KEY)
    settings = EtcdRegistrySettings(
        name="etcd", endpoints=("http://127.0.0.1:9", etcd.url), key="/services/web/{pod.ip}:8080"
    )
    backend = EtcdRegistry(settings, POD, key="registries[0]")
    try:
        result = await Retire([backend], backoff=FAST).run(deadline_in())
    finally:
        await backend.close()
    entry = result.detail["registries"]["etcd"]
    assert (entry["outcome"], entry["attempts"]) == ("removed", 3)


# Faults: every outcome comes by the deadline.


async def test_etcd_gone_mid_retire_ends_in_error_by_the_deadline(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    await gateway.put(KEY)

    async def partition() -> None:
        await asyncio.to_thread(etcd.stop)

    deadline = deadline_in(5)
    async with registry(etcd) as backend:
        result = await Retire([_AfterDeregister(backend, partition)], backoff=FAST).run(deadline)
    assert asyncio.get_running_loop().time() <= deadline
    entry = result.detail["registries"]["etcd"]
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "unknown",
        "failed",
        "unknown",
    )
    assert entry["outcome"] == "error"
    assert "ClientConnectorError" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_a_hung_etcd_is_cut_at_the_deadline_then_retire_works_once_it_is_back(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    await gateway.put(KEY)
    loop = asyncio.get_running_loop()
    async with registry(etcd) as backend:
        etcd.pause()
        try:
            started = loop.time()
            result = await Retire([backend], backoff=FAST).run(started + 1.0)
            took = loop.time() - started
        finally:
            etcd.resume()
        entry = result.detail["registries"]["etcd"]
        assert (entry["deregister"], entry["outcome"], entry.get("timed_out")) == (
            "failed",
            "error",
            True,
        )
        assert result.outcome is Outcome.TIMED_OUT
        assert 0.9 <= took <= 1.5
        again = await Retire([backend], backoff=FAST).run(deadline_in())
    # The cut request may still be read and applied once etcd runs again (it was in etcd's
    # socket buffer): then the second retire finds the key gone, and says so.
    assert again.detail["registries"]["etcd"]["outcome"] in {"removed", "already_absent"}
    assert again.outcome is Outcome.OK
    assert await gateway.keys("/services/") == {}


async def test_the_v3beta_prefix_of_etcd_3_3_and_3_4_works_the_same(
    etcd: EtcdServer, gateway: Gateway
) -> None:
    await gateway.put(KEY)
    async with registry(etcd, api_prefix="/v3beta") as backend:
        result = await Retire([backend]).run(deadline_in())
    assert result.detail["registries"]["etcd"]["outcome"] == "removed"
    assert await gateway.keys("/services/") == {}
