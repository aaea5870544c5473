"""Pins the generic HTTP registry over real loopback HTTP, driven through announce and retire:
removed, already absent, forced when a removal does not stick, still present when forcing fails,
5xx then success, a hanging server cut at the deadline, a secret header arriving, and templates
with unknown placeholders rejected at construction naming the key and the placeholder."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.adapters.http_action import HttpClient, http_actions
from sidecar.adapters.registries import build_registries
from sidecar.adapters.registries.http import HttpRegistry
from sidecar.errors import ConfigError
from sidecar.model.http_action import Identity, identity_of
from sidecar.model.report import Outcome
from sidecar.settings import PodIdentity
from sidecar.settings.registries import (
    HeaderSettings,
    HttpActionSettings,
    HttpRegistrySettings,
    HttpVerifySettings,
    RetrySettings,
)
from sidecar.shutdown.registries import Announce, Retire

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))


class FakeRegistryServer:
    """Instances by id; a deregister may not stick (a live app re-registers), as in Eureka."""

    def __init__(self) -> None:
        self.instances: dict[str, str] = {}
        #: Deregister answers 200 but the entry stays.
        self.sticky = False
        self.force_fails = False
        #: The next this many deregisters answer 503.
        self.unavailable = 0
        self.hang = False
        self.hang_started = asyncio.Event()
        self.log: list[str] = []
        self.tokens: list[str | None] = []
        app = web.Application()
        app.router.add_put("/apps/{id}/status", self.mark_down)
        app.router.add_delete("/apps/{id}", self.deregister)
        app.router.add_get("/apps/{id}", self.read)
        app.router.add_delete("/admin/apps/{id}", self.force)
        self.server = TestServer(app, host="127.0.0.1")

    async def _enter(self, request: web.Request, what: str) -> str:
        self.log.append(what)
        self.tokens.append(request.headers.get("X-Registry-Token"))
        if self.hang:
            self.hang_started.set()
            await asyncio.Event().wait()
        return request.match_info["id"]

    async def mark_down(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "mark_down")
        if key not in self.instances:
            return web.Response(status=404)
        self.instances[key] = request.query["value"]
        return web.Response()

    async def deregister(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "deregister")
        if self.unavailable:
            self.unavailable -= 1
            return web.Response(status=503, text="registry busy")
        if key not in self.instances:
            return web.Response(status=404)
        if not self.sticky:
            del self.instances[key]
        return web.Response()

    async def read(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "read")
        if key not in self.instances:
            return web.Response(status=404)
        return web.json_response({"id": key, "status": self.instances[key]})

    async def force(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "force")
        if self.force_fails:
            return web.Response(status=500, text="admin API failed")
        self.instances.pop(key, None)
        return web.Response()

    def base(self) -> str:
        return str(self.server.make_url("/"))


@pytest.fixture
async def registry_server() -> AsyncIterator[FakeRegistryServer]:
    server = FakeRegistryServer()
    server.instances["shop.web-1"] = "UP"
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.close()


def _settings(
    base: str, *, force: bool = True, headers: tuple[HeaderSettings, ...] = ()
) -> HttpRegistrySettings:
    instance = base + "apps/{pod.namespace}.{pod.name}"
    return HttpRegistrySettings(
        name="eureka-like",
        mark_down=HttpActionSettings(
            url=instance + "/status?value=OUT_OF_SERVICE", method="PUT", headers=headers
        ),
        deregister=HttpActionSettings(url=instance, method="DELETE", headers=headers),
        verify=HttpVerifySettings(url=instance, headers=headers),
        force_remove=HttpActionSettings(
            url=base + "admin/apps/{pod.namespace}.{pod.name}" if force else "",
            method="DELETE",
            headers=headers,
        ),
    )


def _registry(
    server: FakeRegistryServer, client: HttpClient, *, force: bool = True
) -> HttpRegistry:
    return HttpRegistry(_settings(server.base(), force=force), POD, client)


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_deregister_then_an_absent_read_back_is_removed(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    result = await Retire([_registry(registry_server, client)]).run(_deadline())
    assert registry_server.log == ["deregister", "read"]
    assert registry_server.instances == {}
    assert result.outcome is Outcome.OK
    assert result.detail["registries"]["eureka-like"]["outcome"] == "removed"


async def test_an_entry_absent_from_the_start_is_already_absent(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.instances.clear()
    result = await Retire([_registry(registry_server, client)]).run(_deadline())
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["deregister"], entry["outcome"]) == ("gone", "already_absent")


async def test_a_removal_that_does_not_stick_is_forced_through_the_admin_api(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = True
    result = await Retire([_registry(registry_server, client)]).run(_deadline())
    assert registry_server.log == ["deregister", "read", "force", "read"]
    assert registry_server.instances == {}
    assert result.detail["registries"]["eureka-like"]["outcome"] == "forced"
    assert result.outcome is Outcome.OK


async def test_when_forcing_fails_the_entry_is_reported_still_present(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = registry_server.force_fails = True
    retire = Retire([_registry(registry_server, client)], backoff=RetrySettings(attempts=2))
    result = await retire.run(_deadline())
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["force"], entry["read_again"], entry["outcome"]) == (
        "failed",
        "present",
        "still_present",
    )
    assert "HTTP 500, expected 200, 201, 202, 204: admin API failed" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_without_a_force_action_a_lingering_entry_is_still_present(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = True
    registry = _registry(registry_server, client, force=False)
    assert not registry.can_force
    result = await Retire([registry]).run(_deadline())
    assert registry_server.log == ["deregister", "read"]
    assert result.detail["registries"]["eureka-like"]["outcome"] == "still_present"


async def test_a_busy_registry_is_retried_until_it_answers(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.unavailable = 2
    result = await Retire([_registry(registry_server, client)]).run(_deadline())
    assert registry_server.log == ["deregister"] * 3 + ["read"]
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["outcome"], entry["attempts"]) == ("removed", 4)


async def test_a_hanging_registry_is_cut_at_the_deadline(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.hang = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.4
    result = await Retire([_registry(registry_server, client)]).run(deadline)
    assert registry_server.hang_started.is_set()
    assert loop.time() == pytest.approx(deadline, abs=0.15)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["registries"]["eureka-like"]["timed_out"] is True


async def test_announce_marks_the_instance_out_of_service(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    result = await Announce([_registry(registry_server, client)]).run(_deadline())
    assert registry_server.instances == {"shop.web-1": "OUT_OF_SERVICE"}
    assert result.detail["registries"]["eureka-like"]["outcome"] == "marked_down"


async def test_a_secret_header_from_a_file_reaches_the_registry(
    registry_server: FakeRegistryServer, client: HttpClient, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    headers = (HeaderSettings("X-Registry-Token", file=str(secret)),)
    registry = HttpRegistry(_settings(registry_server.base(), headers=headers), POD, client)
    await Retire([registry]).run(_deadline())
    assert registry_server.tokens == ["s3cret", "s3cret"]


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ("deregister", "registries[3].deregister.url"),
        ("mark_down", "registries[3].mark_down.url"),
        ("force_remove", "registries[3].force_remove.url"),
    ],
)
def test_an_unknown_placeholder_is_rejected_at_construction(
    step: str, key: str, client: HttpClient
) -> None:
    base = "http://registry:8761/"
    action = HttpActionSettings(url=base + "apps/{pod.hostname}", method="DELETE")
    settings = _settings(base)
    settings = HttpRegistrySettings(
        name=settings.name,
        deregister=action if step == "deregister" else settings.deregister,
        verify=settings.verify,
        mark_down=action if step == "mark_down" else settings.mark_down,
        force_remove=action if step == "force_remove" else settings.force_remove,
    )
    with pytest.raises(ConfigError) as caught:
        HttpRegistry(settings, POD, client, key="registries[3]")
    assert str(caught.value).startswith(f"{key}: unknown placeholder {{pod.hostname}}; known: ")


def test_a_registry_action_with_its_own_read_back_is_rejected(client: HttpClient) -> None:
    settings = _settings("http://registry/")
    deregister = HttpActionSettings(
        url="http://registry/x", verify=HttpVerifySettings(url="http://registry/x")
    )
    settings = HttpRegistrySettings(name="r", deregister=deregister, verify=settings.verify)
    with pytest.raises(ConfigError, match=r"^registries\[0\]\.deregister\.verify: not used"):
        HttpRegistry(settings, POD, client)


def test_registries_are_built_from_settings_each_error_naming_its_index(
    client: HttpClient,
) -> None:
    good = _settings("http://registry/")
    bad = HttpRegistrySettings(
        name="bad",
        deregister=HttpActionSettings(url="http://registry/{pod.labels[team]}"),
        verify=good.verify,
    )
    [registry] = build_registries([good], POD, client)
    assert (registry.name, registry.can_mark_down, registry.can_force) == (
        "eureka-like",
        True,
        True,
    )
    with pytest.raises(
        ConfigError, match=r"^registries\[1\]\.deregister\.url: the pod has no label"
    ):
        build_registries([good, bad], POD, client)


async def test_settings_pod_identity_becomes_the_template_view_and_actions_are_named(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    pod = identity_of(PodIdentity(name="web-1", namespace="shop", ips=("10.0.0.7",)))
    assert pod == Identity(name="web-1", namespace="shop", ips=("10.0.0.7",))
    url = registry_server.base() + "apps/{pod.namespace}.{pod.name}/status?value=DOWN"
    [offline] = http_actions(
        [HttpActionSettings(url=url, method="PUT", name="offline")], pod, client, "offline"
    )
    result = await Announce([], [offline]).run(_deadline())
    assert registry_server.instances == {"shop.web-1": "DOWN"}
    assert result.detail == {"actions": {"offline": {"outcome": "ok", "attempts": 1}}}
