"""InjectorApi against the stand-in: the namespace's token Secret read or made, races, faults."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.adapters.kube import SECRET_LABELS, InjectorApi
from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, service_object
from sidecar.errors import ApiError
from sidecar.settings import KubernetesSettings

NAME, KEY = "shutdown-coordinator-token", "token"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets"


@pytest.fixture
async def api(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[InjectorApi]:
    settings = KubernetesSettings(
        enabled=True,
        kubeconfig=str(cp.write_kubeconfig(tmp_path / "kubeconfig")),
        request_timeout_seconds=0.5,
    )
    injector = InjectorApi(settings)
    yield injector
    await injector.close()


def _secret(value: str, namespace: str = NAMESPACE) -> dict[str, object]:
    return {"metadata": {"name": NAME, "namespace": namespace}, "stringData": {KEY: value}}


async def test_an_absent_secret_is_created_once_with_a_random_token(
    cp: ControlPlane, api: InjectorApi
) -> None:
    token = await api.hook_token(NAMESPACE, NAME, KEY, create=True)
    stored = cp.store.get("secrets", NAMESPACE, NAME)
    assert stored is not None
    assert base64.b64decode(stored["data"][KEY]).decode() == token
    assert len(token) == 32
    assert stored["type"] == "Opaque"
    assert stored["metadata"]["labels"] == SECRET_LABELS
    # Read back, not made again; another namespace gets a token of its own.
    assert await api.hook_token(NAMESPACE, NAME, KEY, create=True) == token
    other = await api.hook_token("billing", NAME, KEY, create=True)
    assert other != token
    assert cp.calls("POST", "/secrets") == 2
    assert cp.calls("GET", f"{SECRET_PATH}/{NAME}") == 2


async def test_an_existing_secret_is_read_as_it_is(cp: ControlPlane, api: InjectorApi) -> None:
    cp.create("secrets", _secret("made-by-hand-0123456789\n"))
    assert await api.hook_token(NAMESPACE, NAME, KEY, create=True) == "made-by-hand-0123456789\n"
    assert cp.calls("POST", "/secrets") == 0


async def test_without_create_an_absent_secret_is_a_404_and_nothing_is_made(
    cp: ControlPlane, api: InjectorApi
) -> None:
    with pytest.raises(ApiError) as raised:
        await api.hook_token(NAMESPACE, NAME, KEY, create=False)
    assert raised.value.status == 404
    assert str(raised.value).startswith("get secret: HTTP 404: ")
    assert cp.store.get("secrets", NAMESPACE, NAME) is None
    assert cp.calls("POST", "/secrets") == 0


async def test_a_create_race_lost_reads_the_winners_token(
    cp: ControlPlane, api: InjectorApi
) -> None:
    # The other replica created it between our read (404) and our create (409 AlreadyExists).
    cp.create("secrets", _secret("the-other-replicas-token"))
    cp.faults = Faults(status=404, path_contains=f"{SECRET_PATH}/{NAME}", times=1)
    assert await api.hook_token(NAMESPACE, NAME, KEY, create=True) == "the-other-replicas-token"
    assert cp.calls("POST", "/secrets") == 1  # answered 409
    assert cp.calls("GET", f"{SECRET_PATH}/{NAME}") == 2
    stored = cp.store.get("secrets", NAMESPACE, NAME)
    assert stored is not None
    assert base64.b64decode(stored["data"][KEY]) == b"the-other-replicas-token"


async def test_two_replicas_racing_end_with_one_token(cp: ControlPlane, tmp_path: Path) -> None:
    settings = KubernetesSettings(
        enabled=True, kubeconfig=str(cp.write_kubeconfig(tmp_path / "kubeconfig"))
    )
    replicas = [InjectorApi(settings), InjectorApi(settings)]
    try:
        tokens = await asyncio.gather(
            *(r.hook_token(NAMESPACE, NAME, KEY, create=True) for r in replicas)
        )
    finally:
        for replica in replicas:
            await replica.close()
    assert tokens[0] == tokens[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"other": base64.b64encode(b"x" * 20).decode()},
            "get secret: the Secret has no key 'token'",
        ),
        ({KEY: base64.b64encode(b"\xff\xfe").decode()}, "get secret: key 'token' is not text"),
        ({KEY: "not base64!"}, "get secret: key 'token' is not text"),
    ],
)
async def test_a_secret_without_a_text_token_says_so(
    cp: ControlPlane, api: InjectorApi, data: dict[str, str], message: str
) -> None:
    cp.create("secrets", {"metadata": {"name": NAME, "namespace": NAMESPACE}, "data": data})
    with pytest.raises(ApiError) as raised:
        await api.hook_token(NAMESPACE, NAME, KEY, create=True)
    assert str(raised.value) == message
    assert cp.calls("POST", "/secrets") == 0


async def test_forbidden_is_an_api_error_that_says_so(cp: ControlPlane, api: InjectorApi) -> None:
    cp.faults = Faults(status=403, path_contains="/secrets")
    with pytest.raises(ApiError) as raised:
        await api.hook_token(NAMESPACE, NAME, KEY, create=True)
    assert raised.value.forbidden
    assert cp.calls("POST", "/secrets") == 0


async def test_an_api_that_is_down_or_slow_fails_fast(cp: ControlPlane, api: InjectorApi) -> None:
    cp.faults = Faults(delay_seconds=3.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ApiError) as raised:
        await api.hook_token(NAMESPACE, NAME, KEY, create=True)
    assert str(raised.value) == "get secret: no answer within 0.5 s"
    assert raised.value.status is None
    await cp.stop()
    with pytest.raises(ApiError) as down:
        await api.service_selectors(NAMESPACE)
    assert str(down.value).startswith("list services: ClientConnectorError: "), str(down.value)
    assert loop.time() - started < 1.5


async def test_services_are_listed_with_their_selectors(cp: ControlPlane, api: InjectorApi) -> None:
    cp.create("services", service_object("web"))
    cp.create("services", service_object("admin", selector={"app": "admin", "tier": "back"}))
    headless = {"metadata": {"name": "external", "namespace": NAMESPACE}, "spec": {}}
    cp.create("services", headless)
    cp.create(
        "services",
        {**service_object("elsewhere"), "metadata": {"name": "elsewhere", "namespace": "billing"}},
    )
    assert await api.service_selectors(NAMESPACE) == {
        "admin": {"app": "admin", "tier": "back"},
        "external": {},
        "web": {"app": "web"},
    }
    assert await api.service_selectors("empty") == {}


async def test_a_warning_event_is_posted_on_another_pod(cp: ControlPlane, api: InjectorApi) -> None:
    await api.post_pod_event(NAMESPACE, "web-2", "uid-2", "DeletedUnprepared", "cap passed")
    (event,) = cp.events_for(NAMESPACE, "web-2")
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "DeletedUnprepared",
        "cap passed",
    )
    assert event["involvedObject"]["uid"] == "uid-2"
    assert event["source"]["component"] == "shutdown-coordinator-injector"
