"""Pins the Nacos back end over real HTTP to the fake, with the official client as the live app.

The app is nacos-sdk-python 2.0.11's `nacos.NacosClient` (v1 HTTP API: register, beat, read);
the back end marks the instance down and retires it through Announce and Retire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nacos import NacosClient, NacosException  # type: ignore[import-untyped] # ships no types

from sidecar.adapters.registries.nacos import NacosRegistry
from sidecar.errors import AdapterError, ConfigError
from sidecar.model.http_action import Identity
from sidecar.model.registry import Answer, Presence
from sidecar.model.report import Outcome
from sidecar.settings.reader import Reader
from sidecar.settings.registries import RetrySettings
from sidecar.settings.registry_nacos import NacosRegistrySettings
from sidecar.shutdown.registries import Announce, Retire
from tests.fakes.nacos import FakeNacos, Instance

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))
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


@pytest.fixture
async def made() -> AsyncIterator[Callable[..., NacosRegistry]]:
    registries: list[NacosRegistry] = []

    def make(fake: FakeNacos, **changes: Any) -> NacosRegistry:
        settings = NacosRegistrySettings(
            name="nacos", server_url=fake.url, service_name="web", port=PORT
        )
        registry = NacosRegistry(replace(settings, **changes), POD, key="registries[2]")
        registries.append(registry)
        return registry

    yield make
    for registry in registries:
        await registry.close()


async def app_client(fake: FakeNacos, tmp_path: Path, **auth: str) -> Any:
    address = f"127.0.0.1:{fake.server.port}"
    return await asyncio.to_thread(
        NacosClient, server_addresses=address, logDir=str(tmp_path), **auth
    )


def deadline_in(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


@pytest.mark.parametrize(("api_version", "major"), [("v1", 2), ("v2", 2), ("v3", 3)])
async def test_the_live_apps_instance_is_marked_down_then_removed(
    fake: FakeNacos,
    made: Callable[..., NacosRegistry],
    tmp_path: Path,
    api_version: str,
    major: int,
) -> None:
    fake.major = major
    app = await app_client(fake, tmp_path)
    assert await asyncio.to_thread(app.add_naming_instance, "web", IP, PORT, "DEFAULT", 3.0)
    registry = made(fake, api_version=api_version)
    announced = await Announce([registry]).run(deadline_in())
    assert announced.detail["registries"]["nacos"]["outcome"] == "marked_down"
    listed = await asyncio.to_thread(app.list_naming_instance, "web")
    assert listed["hosts"] == []  # the app's read no longer offers it
    await asyncio.to_thread(app.send_heartbeat, "web", IP, PORT, "DEFAULT", 3.0)
    seen = fake.seen("web", IP, PORT)
    assert seen is not None
    assert (seen.enabled, seen.weight) == (False, 3.0)  # the beat undid nothing
    retired = await Retire([registry]).run(deadline_in())
    entry = retired.detail["registries"]["nacos"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("ok", "absent", "removed")
    assert retired.outcome is Outcome.OK
    assert fake.seen("web", IP, PORT) is None


@pytest.mark.parametrize(
    ("api_version", "major", "paths"),
    [
        ("v1", 2, ["GET /nacos/v1/ns/instance", "DELETE /nacos/v1/ns/instance"]),
        ("v2", 2, ["GET /nacos/v2/ns/instance", "DELETE /nacos/v2/ns/instance"]),
        ("v3", 3, ["GET /nacos/v3/admin/ns/instance", "DELETE /nacos/v3/client/ns/instance"]),
    ],
)
async def test_each_api_version_uses_its_own_paths(
    fake: FakeNacos,
    made: Callable[..., NacosRegistry],
    api_version: str,
    major: int,
    paths: list[str],
) -> None:
    fake.major = major
    fake.register("web", Instance(IP, PORT, "DEFAULT"))
    await Retire([made(fake, api_version=api_version)]).run(deadline_in())
    assert fake.log == [*paths, paths[0]]


async def test_the_app_reads_no_instance_after_retire(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    app = await app_client(fake, tmp_path)
    await asyncio.to_thread(app.add_naming_instance, "web", IP, PORT, "DEFAULT")
    await Retire([made(fake)]).run(deadline_in())
    with pytest.raises(NacosException, match="code is 404"):
        await asyncio.to_thread(app.get_naming_instance, "web", IP, PORT, "DEFAULT")


async def test_an_instance_absent_from_the_start_is_already_absent(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    result = await Retire([made(fake)]).run(deadline_in())
    entry = result.detail["registries"]["nacos"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == (
        "gone",
        "absent",
        "already_absent",
    )
    assert fake.log == ["GET /nacos/v2/ns/instance"] * 2  # no DELETE: the detail said none


async def test_a_live_client_re_registering_after_the_delete_is_named_in_the_outcome(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    app = await app_client(fake, tmp_path)
    await asyncio.to_thread(app.add_naming_instance, "web", IP, PORT, "DEFAULT")

    async def live_beat() -> None:  # the app is still running: its next beat follows the delete
        await asyncio.to_thread(app.send_heartbeat, "web", IP, PORT, "DEFAULT")

    fake.after_delete = live_beat
    retire = Retire([made(fake)], backoff=RetrySettings(attempts=2))
    result = await retire.run(deadline_in())
    entry = result.detail["registries"]["nacos"]
    assert (entry["deregister"], entry["read"], entry["force"], entry["read_again"]) == (
        "ok",
        "present",
        "failed",
        "present",
    )
    assert entry["outcome"] == "still_present"
    assert "a live client re-registers a deleted ephemeral instance" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_a_persistent_instance_is_deregistered_and_verified_by_its_detail(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    app = await app_client(fake, tmp_path)
    await asyncio.to_thread(app.add_naming_instance, "web", IP, PORT, "DEFAULT", ephemeral=False)
    assert await made(fake, ephemeral=True).deregister(deadline_in()) is Answer.OK
    assert fake.seen("web", IP, PORT) is not None  # the ephemeral flag picks the client (N4)
    result = await Retire([made(fake, ephemeral=False)]).run(deadline_in())
    assert result.detail["registries"]["nacos"]["outcome"] == "removed"
    assert fake.log[-2:] == ["DELETE /nacos/v2/ns/instance", "GET /nacos/v2/ns/instance"]


async def test_an_expired_token_is_renewed_by_a_new_login(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    fake.users = {"nacos": "s3cret"}
    fake.register("web", Instance(IP, PORT, "DEFAULT"))
    (tmp_path / "user").write_text("nacos\n")
    (tmp_path / "pass").write_text("s3cret\n")
    files = {"username_file": str(tmp_path / "user"), "password_file": str(tmp_path / "pass")}
    registry = made(fake, **files)
    await Announce([registry]).run(deadline_in())
    assert fake.logins == 1
    fake.expire_tokens()
    result = await Retire([registry]).run(deadline_in())
    assert result.detail["registries"]["nacos"]["outcome"] == "removed"
    assert fake.logins == 2
    assert fake.log.count("POST /nacos/v1/auth/login") == 2


async def test_wrong_credentials_fail_naming_the_login_without_the_password(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    fake.users = {"nacos": "s3cret"}
    (tmp_path / "user").write_text("nacos")
    (tmp_path / "pass").write_text("wrong-pw")
    registry = made(
        fake, username_file=str(tmp_path / "user"), password_file=str(tmp_path / "pass")
    )
    with pytest.raises(AdapterError) as caught:
        await registry.is_present(deadline_in())
    assert str(caught.value).startswith("nacos: login POST /v1/auth/login: HTTP 403: ")
    assert "wrong-pw" not in str(caught.value)


async def test_the_v3_login_path_is_used_with_api_version_v3(
    fake: FakeNacos, made: Callable[..., NacosRegistry], tmp_path: Path
) -> None:
    fake.major, fake.users = 3, {"nacos": "s3cret"}
    (tmp_path / "user").write_text("nacos")
    (tmp_path / "pass").write_text("s3cret")
    registry = made(
        fake,
        api_version="v3",
        username_file=str(tmp_path / "user"),
        password_file=str(tmp_path / "pass"),
    )
    assert await registry.is_present(deadline_in()) is Presence.ABSENT
    assert fake.log[0] == "POST /nacos/v3/auth/user/login"


async def test_a_busy_server_is_retried_until_it_answers(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    fake.register("web", Instance(IP, PORT, "DEFAULT"))
    fake.fail_next = 2
    result = await Retire([made(fake)]).run(deadline_in())
    entry = result.detail["registries"]["nacos"]
    assert (entry["outcome"], entry["attempts"]) == ("removed", 4)


async def test_a_hanging_server_is_cut_at_the_deadline(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    fake.hang = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.4
    result = await Retire([made(fake)]).run(deadline)
    assert fake.hang_started.is_set()
    assert loop.time() == pytest.approx(deadline, abs=0.15)
    assert result.outcome is Outcome.TIMED_OUT


async def test_a_down_server_is_an_error_within_the_deadline() -> None:
    down = FakeNacos()
    await down.start()
    url = down.url
    await down.close()
    registry = NacosRegistry(
        NacosRegistrySettings(name="nacos", server_url=url, service_name="web", port=PORT),
        POD,
        key="registries[0]",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    try:
        result = await Retire([registry], backoff=RetrySettings(attempts=2)).run(deadline)
    finally:
        await registry.close()
    assert loop.time() < deadline
    entry = result.detail["registries"]["nacos"]
    assert (entry["outcome"], entry["deregister"]) == ("error", "failed")
    assert "ClientConnectorError" in entry["error"]


async def test_the_old_admin_api_on_nacos_3_points_to_v3(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    fake.major = 3
    with pytest.raises(AdapterError, match=r"HTTP 410 \(Nacos 3 turns the v1/v2 admin API off"):
        await made(fake, api_version="v2").is_present(deadline_in())


async def test_v3_on_a_nacos_2_server_says_the_endpoint_is_missing(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    with pytest.raises(AdapterError, match="no such endpoint: does this server speak api_version"):
        await made(fake, api_version="v3").is_present(deadline_in())


async def test_a_removal_that_does_not_stick_is_still_present(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    fake.register("web", Instance(IP, PORT, "DEFAULT"))
    fake.sticky = True
    result = await Retire([made(fake)], backoff=RetrySettings(attempts=1)).run(deadline_in())
    entry = result.detail["registries"]["nacos"]
    assert (entry["read"], entry["read_again"], entry["outcome"]) == (
        "present",
        "present",
        "still_present",
    )


async def test_mark_down_by_weight_keeps_the_instance_enabled_and_its_metadata(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    fake.register("web", Instance(IP, PORT, "DEFAULT", weight=2.0, metadata={"zone": "a"}))
    await made(fake, mark_down="weight").mark_down(deadline_in())
    seen = fake.seen("web", IP, PORT)
    assert seen is not None
    assert (seen.enabled, seen.weight, seen.metadata) == (True, 0.0, {"zone": "a"})


async def test_mark_down_of_an_unregistered_instance_changes_nothing(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    await made(fake).mark_down(deadline_in())
    assert fake.log == ["GET /nacos/v2/ns/instance"]
    assert fake.overrides == {}


async def test_the_instance_is_named_by_group_namespace_and_cluster(
    fake: FakeNacos, made: Callable[..., NacosRegistry]
) -> None:
    where = {"namespace": "prod", "group": "shop", "cluster": "east"}
    fake.register("web", Instance(IP, PORT, "east"), namespace="prod", group="shop")
    registry = made(fake, namespace_id="prod", group_name="shop", cluster_name="east")
    assert await registry.is_present(deadline_in()) is Presence.PRESENT
    assert await made(fake).is_present(deadline_in()) is Presence.ABSENT
    await registry.mark_down(deadline_in())
    seen = fake.seen("web", IP, PORT, **where)
    assert seen is not None
    assert seen.enabled is False


def test_nothing_connects_before_the_first_call(fake: FakeNacos) -> None:
    registry = NacosRegistry(
        NacosRegistrySettings(name="nacos", server_url=fake.url, service_name="web", port=PORT),
        POD,
        key="registries[0]",
    )
    assert not registry._http.opened  # the lazy session is the point
    assert (registry.can_mark_down, registry.can_force) == (True, True)


def test_an_ip_this_pod_cannot_fill_is_a_config_error_naming_the_key() -> None:
    settings = NacosRegistrySettings(
        name="nacos", server_url="http://nacos:8848/nacos", service_name="web", port=PORT
    )
    with pytest.raises(ConfigError, match=r"registries\[4\]\.ip: \{pod\.ip\} is empty"):
        NacosRegistry(settings, Identity(name="web-1"), key="registries[4]")
    with pytest.raises(ConfigError, match=r"registries\[4\]: expected both username_file"):
        NacosRegistry(replace(settings, username_file="/u"), POD, key="registries[4]")


def test_the_settings_read_from_a_dict_with_defaults() -> None:
    reader = Reader({})
    data = {
        "kind": "nacos",
        "name": "nacos",
        "server_url": "http://nacos:8848/nacos/",
        "service_name": "web",
        "port": 8080,
    }
    settings = reader.read(NacosRegistrySettings, data, "registries[0]")
    assert reader.errors == {}
    assert settings == NacosRegistrySettings(
        name="nacos", server_url="http://nacos:8848/nacos", service_name="web", port=8080
    )
    assert (settings.api_version, settings.group_name, settings.cluster_name, settings.ip) == (
        "v2",
        "DEFAULT_GROUP",
        "DEFAULT",
        "{pod.ip}",
    )
    bad = Reader({})
    bad.read(NacosRegistrySettings, {**data, "api_version": "v4", "port": 0}, "registries[0]")
    assert set(bad.errors) == {"registries[0].api_version", "registries[0].port"}
