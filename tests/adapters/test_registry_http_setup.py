"""Pins the HTTP registry's announce, secret headers and templates checked at construction."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.adapters.http_action import HttpClient, http_actions
from sidecar.adapters.registries import build_registries
from sidecar.adapters.registries.http import HttpRegistry
from sidecar.errors import ConfigError
from sidecar.model.http_action import Identity, identity_of
from sidecar.settings import PodIdentity
from sidecar.settings.registries import (
    HeaderSettings,
    HttpActionSettings,
    HttpRegistrySettings,
    HttpVerifySettings,
)
from sidecar.shutdown.registries import Announce, Retire
from tests.adapters.registry_server import (
    POD,
    FakeRegistryServer,
    deadline_in,
    registry_of,
    registry_settings,
)


async def test_announce_marks_the_instance_out_of_service(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    result = await Announce([registry_of(registry_server, client)]).run(deadline_in())
    assert registry_server.instances == {"shop.web-1": "OUT_OF_SERVICE"}
    assert result.detail["registries"]["eureka-like"]["outcome"] == "marked_down"


async def test_a_secret_header_from_a_file_reaches_the_registry(
    registry_server: FakeRegistryServer, client: HttpClient, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    headers = (HeaderSettings("X-Registry-Token", file=str(secret)),)
    registry = HttpRegistry(registry_settings(registry_server.base(), headers=headers), POD, client)
    await Retire([registry]).run(deadline_in())
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
    settings = registry_settings(base)
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
    settings = registry_settings("http://registry/")
    deregister = HttpActionSettings(
        url="http://registry/x", verify=HttpVerifySettings(url="http://registry/x")
    )
    settings = HttpRegistrySettings(name="r", deregister=deregister, verify=settings.verify)
    with pytest.raises(ConfigError, match=r"^registries\[0\]\.deregister\.verify: not used"):
        HttpRegistry(settings, POD, client)


def test_registries_are_built_from_settings_each_error_naming_its_index(
    client: HttpClient,
) -> None:
    good = registry_settings("http://registry/")
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
    result = await Announce([], [offline]).run(deadline_in())
    assert registry_server.instances == {"shop.web-1": "DOWN"}
    assert result.detail == {"actions": {"offline": {"outcome": "ok", "attempts": 1}}}
