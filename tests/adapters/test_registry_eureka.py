"""Pins the Eureka back end over real HTTP to two fake peers and against the official client.

Announce and retire run through sidecar.shutdown.registries; the peers replicate to each other
as Eureka's do (tests/fakes/eureka.py), unless a test makes one miss it or fail.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

# py-eureka-client has no stubs and no py.typed marker.
from py_eureka_client import eureka_basic, eureka_client  # type: ignore[import-untyped]
from py_eureka_client import logger as eureka_logger

from sidecar.adapters.registries.eureka import EurekaRegistry
from sidecar.errors import AdapterError, ConfigError
from sidecar.model.http_action import Identity
from sidecar.model.registry import Answer, Presence
from sidecar.model.report import Outcome
from sidecar.settings.reader import Reader
from sidecar.settings.registries import RetrySettings
from sidecar.settings.registry_eureka import EurekaRegistrySettings
from sidecar.shutdown.registries import Announce, Retire
from tests.fakes.eureka import FakeEureka

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))
ID = "10.0.0.7:web:8080"
ANY = "http://eureka:8761/eureka"
#: py-eureka-client logs with the deprecated Logger.warn, which this suite turns into an error.
OLD_WARN = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
FAST = RetrySettings(first_seconds=0.01, max_seconds=0.05, attempts=3)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[FakeEureka, FakeEureka]]:
    a, b = FakeEureka(), FakeEureka()
    a.peers, b.peers = [b], [a]
    await a.start()
    await b.start()
    a.seed("web", ID)
    b.seed("web", ID)
    yield a, b
    await a.close()
    await b.close()


def settings(*servers: FakeEureka | str, **changes: Any) -> EurekaRegistrySettings:
    given: dict[str, Any] = {
        "name": "eureka",
        "peers": tuple(s if isinstance(s, str) else s.url() for s in servers),
        "app": "web",
        "instance_id": "{pod.ip}:web:8080",
    }
    return EurekaRegistrySettings(**(given | changes))


@pytest.fixture
async def registry(peers: tuple[FakeEureka, FakeEureka]) -> AsyncIterator[EurekaRegistry]:
    eureka = EurekaRegistry(settings(*peers), POD, key="registries[1]")
    yield eureka
    await eureka.close()


def deadline_in(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def _status(server: FakeEureka) -> str | None:
    instance = server.instance("WEB", ID)
    return None if instance is None else str(instance["status"])


# -- settings and construction ------------------------------------------------------------------


def test_settings_read_from_a_mapping_with_their_defaults() -> None:
    reader = Reader({})
    data = {"kind": "eureka", "name": "eureka", "peers": ["http://eureka-0:8761/eureka/"]}
    read = reader.read(EurekaRegistrySettings, data | {"app": "web"}, "registries[0]")
    assert reader.errors == {}
    assert read == EurekaRegistrySettings(
        name="eureka", peers=("http://eureka-0:8761/eureka",), app="web"
    )
    assert (read.instance_id, read.mark_down, read.force, read.timeout_seconds) == (
        "{pod.name}",
        True,
        True,
        2.0,
    )


def test_the_documented_example_reads_and_builds_for_a_labelled_pod() -> None:
    text = (Path(__file__).parents[2] / "docs" / "registries" / "eureka.md").read_text()
    [example] = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    reader = Reader({})
    [entry] = yaml.safe_load(example)["registries"]
    read = reader.read(EurekaRegistrySettings, entry, "registries[0]")
    assert reader.errors == {}
    eureka = EurekaRegistry(read, _with_label("web"))
    assert (eureka.instance, eureka.can_mark_down, eureka.can_force) == (
        "WEB/10.0.0.7:web:8080",
        True,
        True,
    )


def test_a_peer_url_with_a_password_is_refused_without_showing_it() -> None:
    reader = Reader({})
    data = {"name": "e", "app": "web", "peers": ["http://user:hunter2@eureka:8761/eureka"]}
    reader.read(EurekaRegistrySettings, data, "registries[0]")
    [error] = reader.errors.values()
    assert error.startswith("registries[0].peers[0]: expected a URL without user:password@")
    assert "hunter2" not in error


def test_the_app_is_upper_cased_and_the_instance_id_rendered_for_this_pod() -> None:
    eureka = EurekaRegistry(settings(ANY, app="{pod.labels[app]}"), _with_label("shop-web"))
    assert eureka.instance == "SHOP-WEB/10.0.0.7:web:8080"


def _with_label(app: str) -> Identity:
    return Identity(name="web-1", ips=("10.0.0.7",), labels={"app": app})


def test_a_template_this_pod_cannot_fill_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^registries\[2\]\.instance_id: \{pod\.ip\} is empty"):
        EurekaRegistry(settings(ANY), Identity(name="web-1"), key="registries[2]")


def test_a_username_without_a_password_file_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^registries\[2\]: expected both username and"):
        EurekaRegistry(settings(ANY, username="sidecar"), POD, key="registries[2]")


# -- announce and retire ------------------------------------------------------------------------


async def test_mark_down_sets_an_override_on_every_peer_that_heartbeats_do_not_undo(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, b = peers
    b.missing_replication = True  # so b's override is our own request's, not a's replication
    result = await Announce([registry]).run(deadline_in())
    assert result.detail["registries"]["eureka"]["outcome"] == "marked_down"
    assert ("PUT", f"WEB/{ID}/status", 200) in b.log
    heartbeat = f"{a.url()}/apps/WEB/{ID}?status=UP"  # the app's own, still saying UP
    async with aiohttp.ClientSession() as http, http.put(heartbeat) as answer:
        assert answer.status == 200
    assert (_status(a), _status(b)) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")


async def test_mark_down_then_retire_removes_it_from_every_peer(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, b = peers
    await Announce([registry]).run(deadline_in())
    result = await Retire([registry]).run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (result.outcome, entry["outcome"], entry["deregister"], entry["read"]) == (
        Outcome.OK,
        "removed",
        "ok",
        "absent",
    )
    assert (_status(a), _status(b)) == (None, None)
    assert ("GET", f"WEB/{ID}", 404) in a.log
    assert ("GET", f"WEB/{ID}", 404) in b.log


async def test_an_instance_no_peer_has_is_already_absent(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    for server in peers:
        server.apps.clear()
    result = await Retire([registry]).run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["deregister"], entry["outcome"]) == ("gone", "already_absent")


async def test_a_delete_replicated_before_our_second_peer_answers_is_still_ours(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    _, b = peers
    b.fail_next = 1  # the first delete reaches a (replicated to b) but b answers 503
    with pytest.raises(AdapterError, match=rf"{b.url()}: HTTP 503 Service Unavailable"):
        await registry.deregister(deadline_in())
    b.fail_next = 0
    assert await registry.deregister(deadline_in()) is Answer.OK
    assert [s for m, _, s in b.log if m == "DELETE"] == [503, 404]


async def test_a_peer_that_is_down_is_named_in_the_outcome(
    peers: tuple[FakeEureka, FakeEureka],
) -> None:
    a, b = peers
    b_url = b.url()
    await b.down()
    registry = EurekaRegistry(settings(a, b_url), POD)
    try:
        announced = await Announce([registry], backoff=FAST).run(deadline_in())
        retired = await Retire([registry], backoff=FAST).run(deadline_in())
    finally:
        await registry.close()
    mark = announced.detail["registries"]["eureka"]
    assert (announced.outcome, mark["outcome"], mark["attempts"]) == (Outcome.ERROR, "error", 3)
    assert f"{b_url}: ClientConnectorError" in mark["error"]
    assert f"{a.url()}: HTTP 200" in mark["error"]
    entry = retired.detail["registries"]["eureka"]
    assert (retired.outcome, entry["outcome"], entry["read"]) == (Outcome.ERROR, "error", "unknown")
    assert f"{b_url}: ClientConnectorError" in entry["error"]
    assert _status(a) is None  # a removed it; only b could not say


async def test_a_delete_that_does_not_stick_is_forced_by_deleting_again(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, b = peers
    a.sticky_deletes = b.sticky_deletes = 1
    result = await Retire([registry], backoff=FAST).run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["read"], entry["outcome"], entry["read_again"]) == ("present", "forced", "absent")
    assert result.outcome is Outcome.OK
    assert [s for m, _, s in a.log if m == "DELETE"][:2] == [200, 200]


async def test_an_instance_that_stays_after_every_delete_is_still_present(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, b = peers
    a.sticky_deletes = b.sticky_deletes = 100
    result = await Retire([registry], backoff=FAST).run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["force"], entry["read_again"], entry["outcome"]) == (
        "failed",
        "present",
        "still_present",
    )
    assert "present again after our delete answered 200" in entry["error"]
    assert f"{a.url()}: status UP" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_without_force_a_lingering_instance_is_still_present(
    peers: tuple[FakeEureka, FakeEureka],
) -> None:
    a, b = peers
    a.sticky_deletes = b.sticky_deletes = 100
    registry = EurekaRegistry(settings(a, b, force=False), POD)
    try:
        result = await Retire([registry]).run(deadline_in())
    finally:
        await registry.close()
    assert result.detail["registries"]["eureka"]["outcome"] == "still_present"
    assert [m for m, _, _ in a.log] == ["DELETE", "GET"]


async def test_a_5xx_is_retried_until_the_peer_answers(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, _ = peers
    a.fail_next = 2
    result = await Retire([registry], backoff=FAST).run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["outcome"], entry["attempts"]) == ("removed", 4)
    assert [s for m, _, s in a.log if m == "DELETE"] == [503, 503, 404]


async def test_a_peer_that_does_not_answer_is_cut_at_the_deadline(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry
) -> None:
    a, _ = peers
    a.hang = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    result = await Retire([registry], backoff=FAST).run(deadline)
    assert a.hang_started.is_set()
    assert loop.time() == pytest.approx(deadline, abs=0.2)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["registries"]["eureka"]["timed_out"] is True


async def test_a_slow_peer_is_cut_at_its_own_timeout(
    peers: tuple[FakeEureka, FakeEureka],
) -> None:
    a, b = peers
    a.hang = True
    b.apps.clear()
    registry = EurekaRegistry(settings(a, b, timeout_seconds=0.1), POD)
    try:
        with pytest.raises(AdapterError, match=r"no answer within 0\.1 s") as caught:
            await registry.is_present(deadline_in())
    finally:
        await registry.close()
    assert f"{b.url()}: HTTP 404" in str(caught.value)


async def test_basic_auth_comes_from_the_password_file_and_never_shows(tmp_path: Path) -> None:
    server = FakeEureka(credentials=("sidecar", "s3cret"))
    await server.start()
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    good = EurekaRegistry(settings(server, username="sidecar", password_file=str(secret)), POD)
    bad = EurekaRegistry(settings(server), POD)
    try:
        server.seed("web", ID)
        assert await good.is_present(deadline_in()) is Presence.PRESENT
        with pytest.raises(AdapterError, match="HTTP 401") as caught:
            await bad.is_present(deadline_in())
        assert "s3cret" not in str(caught.value)
    finally:
        await good.close()
        await bad.close()
        await server.close()


# -- against the official Python client (py-eureka-client) ---------------------------------------


class _WithLiveClient:
    """Our back end, with the live app's heartbeat after our writes, as its timer would send it."""

    def __init__(self, eureka: EurekaRegistry, client: Any, *, heartbeats: int) -> None:
        self.eureka, self.client, self.heartbeats = eureka, client, heartbeats
        self.name = eureka.name
        self.can_mark_down, self.can_force = eureka.can_mark_down, eureka.can_force

    async def _beat(self) -> None:
        if self.heartbeats > 0:
            self.heartbeats -= 1
            await self.client.send_heartbeat()

    async def mark_down(self, deadline: float) -> None:
        await self.eureka.mark_down(deadline)

    async def deregister(self, deadline: float) -> Answer:
        answer = await self.eureka.deregister(deadline)
        await self._beat()
        return answer

    async def is_present(self, deadline: float) -> Presence:
        return await self.eureka.is_present(deadline)

    async def force_remove(self, deadline: float) -> None:
        try:
            await self.eureka.force_remove(deadline)
        finally:
            await self._beat()


@pytest.fixture
async def live_app(peers: tuple[FakeEureka, FakeEureka]) -> AsyncIterator[Any]:
    """The app, registered in peer a (replicated to b) by py-eureka-client; no timer fires."""
    # Its default logger hands records to a thread of its own; a plain logger keeps them here.
    eureka_logger.set_custom_logger(logging.getLogger("py_eureka_client"))
    for server in peers:
        server.apps.clear()
    client = eureka_client.EurekaClient(
        eureka_server=peers[0].url(),
        app_name="web",
        instance_id=ID,
        instance_ip="10.0.0.7",
        instance_host="web-1",
        instance_port=8080,
        should_discover=False,
        renewal_interval_in_secs=3600,
    )
    await client.start()
    yield client
    await client.stop()


async def _client_read(server: FakeEureka) -> Any:
    return await eureka_basic.get_app_instance(server.url(), "WEB", ID)


@OLD_WARN
async def test_the_official_client_sees_our_override_and_its_heartbeat_keeps_it(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry, live_app: Any
) -> None:
    a, b = peers
    assert ("POST", "WEB", 204) in a.log
    assert (await _client_read(b)).status == "UP"
    result = await Announce([registry]).run(deadline_in())
    assert result.detail["registries"]["eureka"]["outcome"] == "marked_down"
    await live_app.send_heartbeat()
    assert a.log[-1] == ("PUT", f"WEB/{ID}", 200)
    for server in peers:
        assert (await _client_read(server)).status == "OUT_OF_SERVICE"


@OLD_WARN
async def test_a_live_client_re_registers_after_our_delete_and_the_outcome_says_so(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry, live_app: Any
) -> None:
    a, _ = peers
    await Announce([registry]).run(deadline_in())
    retire = Retire([_WithLiveClient(registry, live_app, heartbeats=99)], backoff=FAST)
    result = await retire.run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["read"], entry["force"], entry["outcome"]) == (
        "present",
        "failed",
        "still_present",
    )
    assert "re-registered, as a live client does when its heartbeat gets 404" in entry["error"]
    assert f"{a.url()}: status UP" in entry["error"]
    # The delete dropped the override: the client's re-registration is back in traffic.
    assert (await _client_read(a)).status == "UP"
    after_delete = a.log[a.log.index(("DELETE", f"WEB/{ID}", 200)) + 1 :]
    # Its heartbeat gets 404 (from its cached server, then from its list), so it registers again.
    heartbeat = ("PUT", f"WEB/{ID}", 404)
    assert after_delete[:3] == [heartbeat, heartbeat, ("POST", "WEB", 204)]


@OLD_WARN
async def test_a_client_that_re_registered_once_then_stopped_is_forced_out(
    peers: tuple[FakeEureka, FakeEureka], registry: EurekaRegistry, live_app: Any
) -> None:
    a, b = peers
    retire = Retire([_WithLiveClient(registry, live_app, heartbeats=1)], backoff=FAST)
    result = await retire.run(deadline_in())
    entry = result.detail["registries"]["eureka"]
    assert (entry["read"], entry["force"], entry["read_again"], entry["outcome"]) == (
        "present",
        "ok",
        "absent",
        "forced",
    )
    assert (_status(a), _status(b)) == (None, None)
    heartbeat_then_register = [e for e in a.log if e[0] in ("PUT", "POST")][-2:]
    assert heartbeat_then_register == [("PUT", f"WEB/{ID}", 404), ("POST", "WEB", 204)]
