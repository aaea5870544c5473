"""Pins the ZooKeeper registry against a real ZooKeeper: Dubbo's provider nodes and overrides.

A "live app" is a second kazoo client holding an ephemeral provider node, put back when deleted
while its session lives (Dubbo's registry re-registers), as long as it has not "died".
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped] # kazoo ships no hints
from kazoo.security import CREATOR_ALL_ACL  # type: ignore[import-untyped] # no hints either

from sidecar.adapters.registries.zookeeper import ZookeeperRegistry
from sidecar.errors import AdapterError, ConfigError
from sidecar.model.dubbo import java_url_encode
from sidecar.model.http_action import Identity
from sidecar.model.registry import Answer, Presence
from sidecar.model.report import Outcome
from sidecar.settings.reader import INVALID, Reader
from sidecar.settings.registries import RetrySettings
from sidecar.settings.registry_zookeeper import ZookeeperRegistrySettings
from sidecar.shutdown.registries import Announce, Retire
from tests.servers.zookeeper import ZookeeperServer, running_zookeeper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from pathlib import Path

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))
SERVICE = "com.example.DemoService"
PROVIDERS = f"/dubbo/{SERVICE}/providers"
CONFIGURATORS = f"/dubbo/{SERVICE}/configurators"
OURS = (
    f"dubbo://10.0.0.7:20880/{SERVICE}?anyhost=true&application=demo&group=blue"
    "&methods=sayHello,sayBye&version=1.0.0&timestamp=1700000000000"
)
FAST = RetrySettings(first_seconds=0.05, max_seconds=0.1, attempts=2)
#: Tries never run out before the deadline does.
UNTIL_THE_DEADLINE = RetrySettings(first_seconds=0.05, max_seconds=0.2, attempts=100)
#: Generous: a loaded machine may take seconds for a first session (the JVM warms up).
WAIT_SECONDS = 15.0


def settings(hosts: str, **changes: Any) -> ZookeeperRegistrySettings:
    fields: dict[str, Any] = {"name": "dubbo", "hosts": hosts, "interfaces": (SERVICE,)}
    fields["timeout_seconds"] = WAIT_SECONDS / 3
    return ZookeeperRegistrySettings(**(fields | changes))


def deadline_in(seconds: float = 2 * WAIT_SECONDS) -> float:
    return asyncio.get_running_loop().time() + seconds


class LiveApp:
    """A Dubbo provider's registry client: its node is put back when deleted, until it dies."""

    def __init__(self, hosts: str, url: str = OURS, auth: str = "") -> None:
        self.client = KazooClient(
            hosts=hosts,
            auth_data=[("digest", auth)] if auth else None,
            default_acl=CREATOR_ALL_ACL if auth else None,
        )
        self.path = f"{PROVIDERS}/{java_url_encode(url)}"
        self.recovering = True
        self.exited = False
        self.recreated = 0
        self._loop = asyncio.get_running_loop()
        self._bumped = asyncio.Event()

    def register(self) -> None:
        self.client.start(timeout=WAIT_SECONDS)
        self.client.create(self.path, ephemeral=True, makepath=True)
        self.client.DataWatch(self.path, self._watch)

    @property
    def session(self) -> int:
        session_id: int = self.client.client_id[0]
        return session_id

    def _watch(self, _data: bytes | None, stat: Any) -> None:
        if stat is None and self.recovering:  # deleted while we live: register again
            self.client.create_async(self.path, ephemeral=True).rawlink(self._done)

    def _done(self, _result: Any) -> None:
        self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.recreated += 1
        self._bumped.set()

    async def recreated_at_least(self, count: int) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while self.recreated < count:
                self._bumped.clear()
                await self._bumped.wait()

    def crash(self) -> None:
        """Killed: it re-registers no more, but its session lingers until it expires."""
        self.recovering = False

    def exit(self) -> None:
        """A clean exit: its session closes and ZooKeeper deletes its ephemeral node."""
        if self.exited:
            return
        self.recovering, self.exited = False, True
        self.client.stop()
        self.client.close()


class AfterDeletes:
    """The registry under test, waiting after each delete for whatever `then` waits for."""

    def __init__(self, registry: ZookeeperRegistry, then: Callable[[], Awaitable[None]]) -> None:
        self.registry = registry
        self.then = then
        self.name = registry.name
        self.can_mark_down = registry.can_mark_down
        self.can_force = registry.can_force

    async def mark_down(self, deadline: float) -> None:
        await self.registry.mark_down(deadline)

    async def deregister(self, deadline: float) -> Answer:
        try:
            return await self.registry.deregister(deadline)
        finally:
            await self.then()

    async def is_present(self, deadline: float) -> Presence:
        return await self.registry.is_present(deadline)

    async def force_remove(self, deadline: float) -> None:
        try:
            await self.registry.force_remove(deadline)
        finally:
            await self.then()


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[ZookeeperServer]:
    with running_zookeeper(tmp_path) as server:
        yield server


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Registries and apps to close at the end, whatever the test did."""
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        if isinstance(thing, ZookeeperRegistry):
            await thing.close()
        else:
            await asyncio.to_thread(thing.exit)


@pytest.fixture
def admin(zookeeper: ZookeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=WAIT_SECONDS)
    yield client
    client.stop()
    client.close()


async def live_app(zookeeper: ZookeeperServer, cleanup: list[Any], **kw: Any) -> LiveApp:
    app = LiveApp(zookeeper.hosts, **kw)
    cleanup.append(app)
    await asyncio.to_thread(app.register)
    return app


def registry(cleanup: list[Any], hosts: str, **changes: Any) -> ZookeeperRegistry:
    made = ZookeeperRegistry(settings(hosts, **changes), POD)
    cleanup.append(made)
    return made


async def connect(zk: ZookeeperRegistry) -> None:
    """Its session, however long a loaded machine takes for it, with a short `timeout_seconds`."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            with contextlib.suppress(AdapterError):  # no session yet: wait on it again
                await zk.is_present(deadline_in())
                return


def decoded(client: KazooClient, path: str) -> list[str]:
    return sorted(unquote_plus(child) for child in client.get_children(path))


async def test_a_live_app_puts_its_node_back_and_retire_says_whose_session_did(
    zookeeper: ZookeeperServer, cleanup: list[Any], admin: KazooClient
) -> None:
    app = await live_app(zookeeper, cleanup)
    zk = registry(cleanup, zookeeper.hosts)
    await Announce([zk]).run(deadline_in())
    override = (
        f"override://10.0.0.7:20880/{SERVICE}"
        "?category=configurators&disabled=true&dynamic=true&group=blue&version=1.0.0"
    )
    assert decoded(admin, CONFIGURATORS) == [override]

    deletes = 0

    async def put_back() -> None:
        nonlocal deletes
        deletes += 1
        await app.recreated_at_least(deletes)

    result = await Retire([AfterDeletes(zk, put_back)], backoff=FAST).run(deadline_in())
    entry = result.detail["registries"]["dubbo"]
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "present",
        "failed",
        "present",
    )
    assert entry["outcome"] == "still_present"
    assert result.outcome is Outcome.ERROR
    assert "came back after our delete" in entry["error"]
    assert f"0x{app.session:x}" in entry["error"]
    # Still registered, so still disabled: the override stays while the node does.
    assert decoded(admin, CONFIGURATORS) == [override]


async def test_the_lingering_node_of_a_dead_app_is_removed_and_its_override_with_it(
    zookeeper: ZookeeperServer, cleanup: list[Any], admin: KazooClient
) -> None:
    app = await live_app(zookeeper, cleanup)
    zk = registry(cleanup, zookeeper.hosts)
    await Announce([zk]).run(deadline_in())
    app.crash()
    _, stat = admin.get(app.path)
    assert stat.ephemeralOwner == app.session  # the dead app's session has not expired yet

    result = await Retire([zk]).run(deadline_in())
    entry = result.detail["registries"]["dubbo"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("ok", "absent", "removed")
    assert result.outcome is Outcome.OK
    assert admin.get_children(PROVIDERS) == []
    assert admin.get_children(CONFIGURATORS) == []


async def test_after_the_app_closed_its_session_the_node_is_already_absent(
    zookeeper: ZookeeperServer, cleanup: list[Any], admin: KazooClient
) -> None:
    app = await live_app(zookeeper, cleanup)
    zk = registry(cleanup, zookeeper.hosts)
    await Announce([zk]).run(deadline_in())
    await asyncio.to_thread(app.exit)
    assert admin.get_children(PROVIDERS) == []

    result = await Retire([zk]).run(deadline_in())
    entry = result.detail["registries"]["dubbo"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == (
        "gone",
        "absent",
        "already_absent",
    )
    assert admin.get_children(CONFIGURATORS) == []


async def test_an_encoded_name_is_matched_decoded_and_deleted_by_its_raw_name(
    zookeeper: ZookeeperServer, cleanup: list[Any], admin: KazooClient
) -> None:
    # Lower-case escapes, `+` for a space, `%7E`: a name only the raw child can address.
    ours = (
        "tri%3a%2f%2f10.0.0.7%3a20880%2fcom.example.DemoService%3fnote%3da+b%7Ec*d"
        "%26methods%3dsayHello%252CsayBye"
    )
    others = {
        java_url_encode(f"dubbo://10.0.0.8:20880/{SERVICE}?application=demo"),  # another pod
        java_url_encode(f"dubbo://10.0.0.7:20881/{SERVICE}?application=demo"),  # another port
        "not-a-url",
    }
    for name in {ours, *others}:
        admin.create(f"{PROVIDERS}/{name}", makepath=True)
    admin.create(f"/dubbo/com.example.Other/providers/{java_url_encode(OURS)}", makepath=True)

    scanning = registry(cleanup, zookeeper.hosts, interfaces=())
    result = await Retire([scanning]).run(deadline_in())

    assert result.detail["registries"]["dubbo"]["outcome"] == "removed"
    assert set(admin.get_children(PROVIDERS)) == others
    assert admin.get_children("/dubbo/com.example.Other/providers") == []


async def test_a_stopped_zookeeper_ends_retire_by_the_deadline_as_timed_out(
    zookeeper: ZookeeperServer, cleanup: list[Any]
) -> None:
    app = await live_app(zookeeper, cleanup)
    app.crash()
    zk = registry(cleanup, zookeeper.hosts, timeout_seconds=0.3)
    await connect(zk)

    async def stop_zookeeper() -> None:
        await asyncio.to_thread(app.exit)
        await asyncio.to_thread(zookeeper.stop)

    loop = asyncio.get_running_loop()
    deadline = deadline_in(3.0)
    retire = Retire([AfterDeletes(zk, stop_zookeeper)], backoff=UNTIL_THE_DEADLINE)
    result = await retire.run(deadline)
    assert loop.time() < deadline + 0.5
    entry = result.detail["registries"]["dubbo"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("ok", "unknown", "error")
    assert entry["timed_out"] is True
    assert result.outcome is Outcome.TIMED_OUT
    started = loop.time()
    await zk.close()
    assert loop.time() - started < 3.0


async def test_with_the_apps_digest_identity_its_acl_protected_node_is_removed(
    zookeeper: ZookeeperServer, cleanup: list[Any], tmp_path: Path
) -> None:
    app = await live_app(zookeeper, cleanup, auth="dubbo:s3cret")
    app.crash()
    secret = tmp_path / "zookeeper-auth"
    secret.write_text("dubbo:s3cret\n")

    anonymous = registry(cleanup, zookeeper.hosts)
    with pytest.raises(AdapterError, match="not allowed by the node's ACL"):
        await anonymous.deregister(deadline_in())
    assert (
        await registry(cleanup, zookeeper.hosts, auth_file=str(secret)).deregister(deadline_in())
        is Answer.OK
    )


async def test_a_missing_kazoo_is_an_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[Any]
) -> None:
    zk = registry(cleanup, "127.0.0.1:1")
    for module in ("kazoo", "kazoo.client", "kazoo.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails

    result = await Retire([zk], backoff=FAST).run(deadline_in())
    error = result.detail["registries"]["dubbo"]["error"]
    assert "kazoo is not installed" in error
    assert "shutdown-coordinator[zookeeper]" in error
    with pytest.raises(ConfigError, match=r"registries\[2\]: .*shutdown-coordinator\[zookeeper\]"):
        ZookeeperRegistry(settings("127.0.0.1:1"), POD, key="registries[2]")


def test_nothing_is_imported_or_started_before_the_first_call() -> None:
    code = (
        "import sys, threading\n"
        "from sidecar.adapters.registries.zookeeper import ZookeeperRegistry\n"
        "from sidecar.model.http_action import Identity\n"
        "from sidecar.settings.registry_zookeeper import ZookeeperRegistrySettings\n"
        "s = ZookeeperRegistrySettings(name='z', hosts='127.0.0.1:2181')\n"
        "ZookeeperRegistry(s, Identity(ips=('10.0.0.7',)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('kazoo')), threading.active_count())\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert answer.stdout.split() == ["[]", "1"]


def test_a_host_this_pod_cannot_fill_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"registries\[1\]\.host: \{pod\.ip\} is empty"):
        ZookeeperRegistry(settings("zk:2181"), Identity(name="p"), key="registries[1]")


def test_settings_read_from_a_mapping_with_defaults_and_checked_paths() -> None:
    reader = Reader({})
    entry = {"kind": "zookeeper", "name": "dubbo", "hosts": "zk-0.zk:2181,zk-1.zk:2181"}
    read = reader.read(ZookeeperRegistrySettings, entry, "registries[0]")
    assert reader.errors == {}
    assert read == ZookeeperRegistrySettings(name="dubbo", hosts="zk-0.zk:2181,zk-1.zk:2181")
    assert (read.root, read.ports, read.host, read.mark_down) == (
        "/dubbo",
        (20880,),
        "{pod.ip}",
        "override",
    )

    reader = Reader({})
    bad = entry | {"hosts": "zk 2181", "root": "dubbo/", "chroot": "/a/../b", "ports": []}
    assert reader.read(ZookeeperRegistrySettings, bad, "r") is INVALID
    assert sorted(reader.errors) == ["r.chroot", "r.hosts", "r.ports", "r.root"]


async def test_under_a_chroot_and_another_root_our_node_is_found_and_removed(
    zookeeper: ZookeeperServer, cleanup: list[Any], admin: KazooClient
) -> None:
    providers = f"/prod/dubbo-blue/{SERVICE}/providers"
    admin.create(f"{providers}/{java_url_encode(OURS)}", makepath=True)
    zk = registry(cleanup, zookeeper.hosts, chroot="/prod", root="/dubbo-blue")
    result = await Retire([zk]).run(deadline_in())
    assert result.detail["registries"]["dubbo"]["outcome"] == "removed"
    assert admin.get_children(providers) == []


async def test_a_hung_zookeeper_ends_retire_by_the_deadline_and_close_soon_after(
    zookeeper: ZookeeperServer, cleanup: list[Any]
) -> None:
    zk = registry(cleanup, zookeeper.hosts, timeout_seconds=0.3)
    loop = asyncio.get_running_loop()
    await connect(zk)
    zookeeper.pause()

    deadline = deadline_in(1.5)
    result = await Retire([zk], backoff=UNTIL_THE_DEADLINE).run(deadline)
    assert loop.time() < deadline + 0.5
    entry = result.detail["registries"]["dubbo"]
    assert (entry["deregister"], entry["outcome"], entry["timed_out"]) == ("failed", "error", True)
    assert "no answer" in entry["error"]  # within 0.3 s, or before the deadline
    started = loop.time()
    await zk.close()  # kazoo alone would wait for the hung server up to the session timeout
    assert loop.time() - started < 1.5
