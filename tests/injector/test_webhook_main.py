"""The injector command: the real planner behind the webhook, its arguments and its stop order."""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest

from sidecar.injector import main
from sidecar.injector.certs import Issued
from sidecar.injector.server import Webhook
from sidecar.injector.tls import ServingCertificate
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
