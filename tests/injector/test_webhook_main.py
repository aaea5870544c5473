"""The injector command: the real planner behind the webhook, its arguments and its stop order."""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest

from sidecar.adapters.kube import InjectorApi
from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import service_object
from sidecar.injector import main
from sidecar.injector.certs import Issued
from sidecar.injector.namespaces import TOKEN_TTL_SECONDS, Namespaces
from sidecar.injector.server import Webhook
from sidecar.injector.tls import ServingCertificate
from sidecar.settings import KubernetesSettings
from sidecar.settings.injection import InjectionTemplate
from tests.injector.conftest import PLAIN_POD, Served, review, write_pair

TOKEN = "0123456789abcdef-token"


@pytest.fixture
def plan() -> Any:
    return main.planner(InjectionTemplate(), TOKEN)


async def _inject(served: Served, pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    status, body = await served.post(json.dumps(review(pod)).encode())
    assert status == 200
    response: dict[str, Any] = body["response"]
    if "patch" not in response:
        return pod, response
    patch = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(copy.deepcopy(pod), patch), response


async def test_the_real_planner_injects_once_through_the_webhook(served: Served) -> None:
    injected, response = await _inject(served, PLAIN_POD)
    assert response["patchType"] == "JSONPatch"
    names = [c["name"] for c in injected["spec"]["containers"]]
    assert names == ["app", InjectionTemplate().container_name]
    app = injected["spec"]["containers"][0]
    assert app["lifecycle"]["preStop"]["httpGet"]["port"] == InjectionTemplate().port
    assert all(len(w) <= 120 for w in response.get("warnings", []))
    # Reinvoked (reinvocationPolicy: IfNeeded) on the injected pod: nothing more to add.
    again, second = await _inject(served, injected)
    assert "patch" not in second
    assert again == injected


async def test_a_host_network_pod_is_refused_with_the_reason(served: Served) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["spec"]["hostNetwork"] = True
    unchanged, response = await _inject(served, pod)
    assert unchanged == pod
    assert response["warnings"][0].startswith("shutdown-coordinator: not injected: ")
    assert "hostNetwork" in response["warnings"][0]


async def test_without_a_token_every_pod_is_left_alone_and_said_so(
    tmp_path: Path, issued: Issued
) -> None:
    cert, key, ca = write_pair(tmp_path, issued)
    webhook = Webhook(
        main.planner(InjectionTemplate(), None),
        ServingCertificate(cert, key),
        host="127.0.0.1",
        port=0,
    )
    await webhook.start()
    try:
        async with aiohttp.ClientSession() as session:
            served = Served(webhook, session, ca, cert, key)
            _, response = await _inject(served, PLAIN_POD)
    finally:
        await webhook.stop()
    assert "patch" not in response
    (warning,) = response["warnings"]
    assert warning.startswith("shutdown-coordinator: not injected: no hook token")


async def test_sigterm_drains_unready_then_stops(served: Served) -> None:
    await served.webhook.stop()  # served again below, by the sequence under test
    sigterm, sigint = asyncio.Event(), asyncio.Event()
    served.webhook.serving.clear()
    served.webhook.stopping.clear()
    sequence = asyncio.create_task(
        main.serve_until(served.webhook, sigterm, sigint, shutdown_delay_seconds=60.0)
    )
    await served.webhook.serving.wait()
    assert await served.get("/readyz") == (200, "ready\n")
    sigterm.set()
    # Still answering while unready, until the delay is over (cut short here by SIGINT).
    await served.webhook.stopping.wait()
    assert await served.get("/readyz") == (503, "shutting down\n")
    status, _ = await served.post(json.dumps(review(PLAIN_POD)).encode())
    assert status == 200
    assert not sequence.done()
    sigint.set()
    await sequence
    assert served.webhook.draining.is_set()
    with pytest.raises(aiohttp.ClientConnectionError):
        await served.get("/healthz")


def _args(tmp_path: Path, issued: Issued, **overrides: Any) -> argparse.Namespace:
    cert, key, _ = write_pair(tmp_path / "tls", issued)
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args(["--cert", str(cert), "--key", str(key), "--log-format", "console"])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"template": "{missing}"}, "template '{missing}': cannot read it"),
        ({"template": "bad"}, "invalid template: port: expected"),
        ({"token_file": "short"}, "--token-file"),
        ({"key": Path("/nonexistent/tls.key")}, "cannot read /nonexistent/tls.key"),
        ({"port": 70000}, "--port or --shutdown-delay-seconds out of range"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, issued: Issued, overrides: dict[str, Any], message: str
) -> None:
    (tmp_path / "bad").write_text("port: http\n")
    (tmp_path / "short").write_text("x\n")
    resolved = {
        k: (str(tmp_path / v) if k in ("template", "token_file") and v != "{missing}" else v)
        for k, v in overrides.items()
    }
    err = io.StringIO()
    assert main.run(_args(tmp_path, issued, **resolved), err=err) == 2
    line = err.getvalue()
    assert line.startswith("shutdown-coordinator injector: ")
    assert message in line
    assert line.count("\n") == 1


def test_the_template_file_is_read_with_the_settings_reader(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("image: registry.example/sc:9\nmode: native\n")
    template = main.read_template(str(tmp_path / "t.yaml"))
    assert (template.image, template.mode, template.port) == (
        "registry.example/sc:9",
        "native",
        15120,
    )
    assert main.read_template(None) == InjectionTemplate()


# -- per-namespace tokens and the Service check, against the API stand-in ----------------------

SECRET = "shutdown-coordinator-token"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def cp() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane()
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def namespaces(cp: ControlPlane, tmp_path: Path, clock: Clock) -> AsyncIterator[Namespaces]:
    settings = KubernetesSettings(
        enabled=True,
        kubeconfig=str(cp.write_kubeconfig(tmp_path / "kubeconfig")),
        request_timeout_seconds=0.5,
    )
    looked_up = Namespaces(InjectorApi(settings), InjectionTemplate(), clock=clock)
    yield looked_up
    await looked_up.close()


def _hook_token(injection: Any) -> str:
    patched = jsonpatch.apply_patch(copy.deepcopy(PLAIN_POD), injection.patch)
    (header,) = patched["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"]["httpHeaders"]
    token: str = header["value"]
    return token


def _stored_token(cp: ControlPlane, namespace: str) -> str:
    secret = cp.store.get("secrets", namespace, SECRET)
    assert secret is not None
    return base64.b64decode(secret["data"]["token"]).decode()


async def test_each_namespace_gets_its_own_token_secret_made_once(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    cp.create("services", service_object("web"))
    plan = main.planner(InjectionTemplate(), None, namespaces)
    shop = await plan(PLAIN_POD, "shop", dry_run=False)
    billing = await plan(PLAIN_POD, "billing", dry_run=False)
    assert shop.refused is None
    assert _hook_token(shop) == _stored_token(cp, "shop")
    assert _hook_token(billing) == _stored_token(cp, "billing")
    assert _hook_token(shop) != _hook_token(billing)
    assert not [w for w in shop.warnings if "Service" in w]
    # The next pods of the namespace are planned from the cache: no call at all.
    before = len(cp.requests)
    again = await plan(PLAIN_POD, "shop", dry_run=False)
    assert _hook_token(again) == _hook_token(shop)
    assert len(cp.requests) == before
    assert cp.calls("POST", "/secrets") == 2


async def test_a_burst_of_pods_in_one_namespace_makes_one_lookup(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    plan = main.planner(InjectionTemplate(), None, namespaces)
    plans = await asyncio.gather(*(plan(PLAIN_POD, "shop", dry_run=False) for _ in range(8)))
    assert {_hook_token(p) for p in plans} == {_stored_token(cp, "shop")}
    assert cp.calls("GET", f"/secrets/{SECRET}") == 1
    assert cp.calls("POST", "/secrets") == 1
    assert cp.calls("GET", "/services") == 1


async def test_the_token_is_read_again_after_its_ttl(
    cp: ControlPlane, namespaces: Namespaces, clock: Clock
) -> None:
    cp.create(
        "secrets",
        {
            "metadata": {"name": SECRET, "namespace": "shop"},
            "stringData": {"token": "first-token-0123456789\n"},
        },
    )
    plan = main.planner(InjectionTemplate(), None, namespaces)
    assert _hook_token(await plan(PLAIN_POD, "shop")) == "first-token-0123456789"
    secret = cp.store.get("secrets", "shop", SECRET)
    assert secret is not None
    secret["data"]["token"] = base64.b64encode(b"rotated-token-0123456789").decode()
    cp.store.update("secrets", secret)
    clock.now += TOKEN_TTL_SECONDS - 1
    assert _hook_token(await plan(PLAIN_POD, "shop")) == "first-token-0123456789"
    clock.now += 2
    assert _hook_token(await plan(PLAIN_POD, "shop")) == "rotated-token-0123456789"


async def test_a_dry_run_review_creates_nothing_and_is_left_alone(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    plan = main.planner(InjectionTemplate(), None, namespaces)
    for injection in (await plan(PLAIN_POD, "shop", dry_run=True), await plan(PLAIN_POD, "shop")):
        assert injection.patch == []
        assert injection.refused == (
            f"no hook token: Secret shop/{SECRET} not found; a dry run creates nothing"
        )
    assert cp.calls("POST", "/secrets") == 0
    assert cp.store.get("secrets", "shop", SECRET) is None
    # The failure was not cached: the real review that follows makes the Secret.
    made = await plan(PLAIN_POD, "shop", dry_run=False)
    assert _hook_token(made) == _stored_token(cp, "shop")


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (
            Faults(status=403, path_contains="/secrets"),
            f"Secret shop/{SECRET}: get secret: forbidden",
        ),
        (
            Faults(status=500, path_contains="/secrets"),
            f"Secret shop/{SECRET}: get secret: HTTP 500",
        ),
        (Faults(delay_seconds=3.0), f"Secret shop/{SECRET}: get secret: no answer within 0.5 s"),
    ],
)
async def test_a_token_that_cannot_be_had_leaves_the_pod_alone_saying_why(
    cp: ControlPlane, namespaces: Namespaces, fault: Faults, cause: str
) -> None:
    cp.faults = fault
    plan = main.planner(InjectionTemplate(), None, namespaces)
    started = asyncio.get_running_loop().time()
    injection = await plan(PLAIN_POD, "shop", dry_run=False)
    assert injection.refused == f"no hook token: {cause}"
    assert injection.patch == []
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_a_token_secret_the_agent_would_refuse_leaves_the_pod_alone(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    cp.create(
        "secrets",
        {"metadata": {"name": SECRET, "namespace": "shop"}, "stringData": {"token": "short"}},
    )
    injection = await main.planner(InjectionTemplate(), None, namespaces)(
        PLAIN_POD, "shop", dry_run=False
    )
    assert injection.refused is not None
    assert injection.refused.startswith(f"no hook token: Secret shop/{SECRET} key 'token'")
    assert "16" in injection.refused


async def test_an_api_that_is_down_leaves_the_pod_alone_at_once(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    await cp.stop()
    injection = await main.planner(InjectionTemplate(), None, namespaces)(
        PLAIN_POD, "shop", dry_run=False
    )
    assert injection.refused is not None
    assert injection.refused.startswith(
        f"no hook token: Secret shop/{SECRET}: get secret: ClientConnectorError: "
    ), injection.refused


async def test_the_lookups_of_a_review_stop_at_their_budget(
    cp: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "LOOKUP_SECONDS", 0.2)
    settings = KubernetesSettings(
        enabled=True, kubeconfig=str(cp.write_kubeconfig(tmp_path / "kubeconfig"))
    )
    looked_up = Namespaces(InjectorApi(settings), InjectionTemplate())
    cp.faults = Faults(delay_seconds=3.0)
    try:
        started = asyncio.get_running_loop().time()
        injection = await main.planner(InjectionTemplate(), None, looked_up)(PLAIN_POD, "shop")
        took = asyncio.get_running_loop().time() - started
    finally:
        await looked_up.close()
    assert injection.refused == "no hook token: no answer within 0.2 s"
    assert took < 1.0


@pytest.mark.parametrize(
    ("services", "warned"),
    [
        ([service_object("web")], False),
        ([service_object("web", selector={"app": "web", "tier": "front"})], True),
        ([service_object("admin", selector={"app": "admin"})], True),
        ([{"metadata": {"name": "external", "namespace": "shop"}, "spec": {}}], True),
        ([], True),
    ],
    ids=["selected", "selector-needs-more-labels", "other-app", "no-selector", "no-service"],
)
async def test_a_pod_no_service_selects_is_injected_with_a_warning(
    cp: ControlPlane, namespaces: Namespaces, services: list[dict[str, Any]], warned: bool
) -> None:
    for service in services:
        cp.create("services", service)
    injection = await main.planner(InjectionTemplate(), TOKEN, namespaces)(PLAIN_POD, "shop")
    assert injection.refused is None
    assert _hook_token(injection) == TOKEN  # --token-file overrides the Secret: never read
    assert cp.calls("GET", "/secrets") == 0
    warning = "no Service in shop selects this pod: no rotation to wait for at shutdown"
    assert (warning in injection.warnings) is warned


async def test_services_that_cannot_be_listed_still_inject_with_a_warning(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    cp.faults = Faults(status=403, path_contains="/services")
    injection = await main.planner(InjectionTemplate(), TOKEN, namespaces)(PLAIN_POD, "shop")
    assert injection.refused is None
    assert injection.patch
    assert injection.warnings[-1] == (
        "could not check for a Service selecting this pod: list services: forbidden"
    )


async def test_a_refused_pod_gets_no_service_warning(
    cp: ControlPlane, namespaces: Namespaces
) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["spec"]["hostNetwork"] = True
    injection = await main.planner(InjectionTemplate(), TOKEN, namespaces)(pod, "shop")
    assert injection.refused is not None
    assert not [w for w in injection.warnings if "Service" in w]
    assert cp.calls("GET", "/services") == 0


async def test_the_webhook_answers_with_the_namespace_token_or_the_cause(
    cp: ControlPlane, namespaces: Namespaces, tmp_path: Path, issued: Issued
) -> None:
    cp.create(
        "secrets",
        {
            "metadata": {"name": SECRET, "namespace": "shop"},
            "stringData": {"token": "shop-token-0123456789"},
        },
    )
    cert, key, ca = write_pair(tmp_path / "tls", issued)
    webhook = Webhook(
        main.planner(InjectionTemplate(), None, namespaces),
        ServingCertificate(cert, key),
        host="127.0.0.1",
        port=0,
    )
    await webhook.start()
    try:
        async with aiohttp.ClientSession() as session:
            served = Served(webhook, session, ca, cert, key)
            injected, response = await _inject(served, PLAIN_POD)
            cp.faults = Faults(status=403, path_contains="/secrets/")
            status, body = await served.post(
                json.dumps(review(PLAIN_POD, namespace="billing")).encode()
            )
    finally:
        await webhook.stop()
    header = injected["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"]["httpHeaders"][0]
    assert header["value"] == "shop-token-0123456789"
    prefix = "shutdown-coordinator: "
    assert response["warnings"] == [
        prefix + "no Service in shop selects this pod: no rotation to wait for at shutdown"
    ]
    assert status == 200
    assert "patch" not in body["response"]
    assert body["response"]["warnings"] == [
        prefix + f"not injected: no hook token: Secret billing/{SECRET}: get secret: forbidden"
    ]


def test_the_kubeconfig_option_is_read() -> None:
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args(["--kubeconfig", "kube/config"])
    assert (args.kubeconfig, args.token_file) == ("kube/config", None)
