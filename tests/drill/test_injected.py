"""The drill's coordinated pod comes from plan_patch: hooks, agent command, env and settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.drill.injected import (
    AGENT,
    NODE_IP,
    PROXY,
    DrillPodError,
    PlainPod,
    annotations_set,
    inject,
    launch,
    plain_pod,
    template,
)
from sidecar.drill.params import DrillParams
from sidecar.model.injection import plan_patch
from sidecar.settings import TOKEN_HEADER, load
from sidecar.settings.schema import PhaseSettings, TrafficSettings

TOKEN = "0123456789abcdef0123456789abcdef"
IP = "127.0.0.10"
KNOWN = PlainPod(
    "web-1", "uid-1", IP, app_port=8080, envoy_port=8081, admin_port=9901, pilot_port=9902
)
PARAMS = DrillParams(grace_seconds=20)


def _ops_for(patch: list[dict[str, Any]], where: str, index: int) -> dict[str, Any]:
    """The preStop plan_patch wrote for that container."""
    for op in patch:
        if op["path"] == f"/spec/{where}/{index}/lifecycle":
            prestop: dict[str, Any] = op["value"]["preStop"]
            return prestop
    raise AssertionError(f"no hook for {where}/{index} in {patch}")


@pytest.mark.parametrize("native", [False, True], ids=["classic", "native"])
def test_the_kubelet_calls_the_hooks_plan_patch_wrote(native: bool) -> None:
    params = dataclasses.replace(PARAMS, native=native)
    plain = plain_pod(KNOWN, params)
    injected = inject(plain, template(15120, params), TOKEN)
    # The same plan as plan_patch gives on its own, applied.
    alone = plan_patch(plain, template(15120, params), namespace="shop", token=TOKEN)
    assert injected.injection == alone
    proxy_at = ("initContainers", 0) if native else ("containers", 1)
    for name, (where, index) in (("app", ("containers", 0)), (PROXY, proxy_at)):
        get = _ops_for(alone.patch, where, index)["httpGet"]
        hook = injected.hook(name, IP)
        assert hook.kind == "http"
        assert hook.url == f"http://{IP}:{get['port']}{get['path']}"
        assert hook.url == f"http://{IP}:15120/prestop/{name}"
        assert hook.headers == ((TOKEN_HEADER, TOKEN),)
        assert hook.headers == tuple((h["name"], h["value"]) for h in get["httpHeaders"])
    assert injected.hook(AGENT, IP).kind == "none"
    # Native sidecars stop in reverse order of declaration: the agent after the proxy (C3).
    assert injected.sidecar_order() == (["app", AGENT, PROXY] if native else ["app", PROXY, AGENT])
    assert injected.is_sidecar(AGENT) is native
    assert injected.is_sidecar(PROXY) is native


def test_the_agent_runs_the_injected_command_env_and_settings(tmp_path: Path) -> None:
    plain = plain_pod(KNOWN, PARAMS)
    injected = inject(plain, template(15120, PARAMS), TOKEN)
    kubeconfig = tmp_path / "kubeconfig"
    agent = launch(injected, tmp_path, ip=IP, kubeconfig=kubeconfig)
    assert agent.argv[1:] == [
        "-m",
        "sidecar",
        "agent",
        "-c",
        str(agent.settings_path),
        "--log-format",
        "json",
    ]
    assert agent.settings_path.is_relative_to(tmp_path)
    # The downward API's values, the grace as a literal, the drill's API for the service account.
    assert agent.env["POD_NAME"] == "web-1"
    assert agent.env["POD_NAMESPACE"] == "shop"
    assert agent.env["POD_UID"] == "uid-1"
    assert agent.env["POD_IPS"] == IP
    assert agent.env["HOST_IP"] == NODE_IP
    assert agent.env["TERMINATION_GRACE_PERIOD_SECONDS"] == "20"
    assert agent.env["KUBECONFIG"] == str(kubeconfig)
    # The settings file is the settings annotation, with only the mounted paths moved.
    written = json.loads(agent.settings_path.read_text())
    annotation = injected.settings()
    assert written["server"].pop("token_file") != annotation["server"].pop("token_file")
    assert written["pod"].pop("labels_file") != annotation["pod"].pop("labels_file")
    assert written == annotation
    # And the agent reads it as the drill means: the token from the Secret, no tuning.
    settings = load(str(agent.settings_path), agent.env)
    assert settings.server.token == TOKEN
    assert settings.server.port == 15120
    assert settings.pod.labels == {"app": "web"}
    assert settings.pod.ips == (IP,)
    assert settings.budget.grace_seconds == 20
    # No tuning: the phases and the sampler are the defaults users get.
    assert settings.phases == PhaseSettings()
    assert settings.traffic == TrafficSettings()
    assert settings.envoy.admin_url == "http://127.0.0.1:9901"
    assert settings.envoy.pilot_agent_url == "http://127.0.0.1:9902"
    assert [(c.name, c.role, c.ports) for c in settings.containers] == [
        ("app", "app", (8080,)),
        (PROXY, "proxy", (8081, 15006)),
    ]
    assert settings.registries == ()


def test_registry_routing_injects_the_registry_from_the_templates_shared_settings(
    tmp_path: Path,
) -> None:
    registry = [
        {
            "kind": "etcd",
            "name": "etcd",
            "endpoints": ["http://127.0.0.1:2379"],
            "key": "/services/web/providers/{pod.ip}:8081",
        }
    ]
    injected = inject(plain_pod(KNOWN, PARAMS), template(15120, PARAMS, registry), TOKEN)
    assert injected.settings()["registries"] == registry  # in the pod's settings annotation
    agent = launch(injected, tmp_path, ip=IP, kubeconfig=tmp_path / "k")
    assert json.loads(agent.settings_path.read_text())["registries"] == registry


def test_a_pod_plan_patch_refuses_stops_the_drill() -> None:
    plain = plain_pod(KNOWN, PARAMS)
    plain["spec"]["hostNetwork"] = True
    with pytest.raises(DrillPodError, match="hostNetwork"):
        inject(plain, template(15120, PARAMS), TOKEN)


def test_the_plain_pod_tunes_nothing_and_moves_ports_only_on_shared_loopback() -> None:
    on_loopback = annotations_set(plain_pod(KNOWN, PARAMS))
    assert sorted(on_loopback) == ["envoy.admin-url", "envoy.pilot-agent-url"]
    own = dataclasses.replace(KNOWN, own_netns=True)
    assert annotations_set(plain_pod(own, PARAMS)) == {}
