"""plan_patch over a table of pods: the patch applied with a JSON Patch library, then again."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest

from sidecar.model.injection import Injection, plan_patch
from sidecar.model.injection_pod import ISTIO_EXCLUDE_INBOUND, SETTINGS_PATH, TOKEN_PATH
from sidecar.settings.injection import InjectionTemplate

TOKEN = "0123456789abcdef-token"
T = InjectionTemplate(version="1.2.3", image="registry.example/sc:1.2.3")
P = "shutdown-coordinator.io"


def app(name: str = "web", *ports: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{name}:1", "ports": [{"containerPort": p} for p in ports]} | (
        extra
    )


def proxy(**extra: Any) -> dict[str, Any]:
    return {
        "name": "istio-proxy",
        "image": "istio/proxyv2",
        "ports": [{"containerPort": 15090}],
    } | (extra)


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", None)
    metadata: dict[str, Any] = {"name": "p", "namespace": "shop"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": list(containers), **spec}}  # fmt: skip


def inject(
    source: dict[str, Any], template: InjectionTemplate = T
) -> tuple[dict[str, Any], Injection]:
    original = copy.deepcopy(source)
    plan = plan_patch(source, template, namespace="shop", token=TOKEN)
    assert source == original, "plan_patch must not change its input"
    assert plan.refused is None, plan.refused
    assert all(len(w) <= 120 for w in plan.warnings)
    return jsonpatch.apply_patch(source, plan.patch), plan


def settings_of(result: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(result["metadata"]["annotations"][f"{P}/settings"])
    return loaded


def named(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in entries if e["name"] == name)


def hook_of(container: dict[str, Any]) -> dict[str, Any]:
    get: dict[str, Any] = container["lifecycle"]["preStop"]["httpGet"]
    return get


def test_a_plain_app_gets_the_agent_its_hook_the_volumes_and_the_annotations() -> None:
    result, plan = inject(pod(app("web", 8080)))
    assert plan.warnings == []
    web, agent = result["spec"]["containers"]
    assert hook_of(web) == {
        "path": "/prestop/web",
        "port": 15120,
        "httpHeaders": [{"name": "X-Shutdown-Token", "value": TOKEN}],
    }
    assert agent["name"] == "shutdown-coordinator"
    assert agent["image"] == "registry.example/sc:1.2.3"
    assert agent["args"] == ["agent", "-c", SETTINGS_PATH]
    assert "restartPolicy" not in agent
    env = {e["name"]: e for e in agent["env"]}
    assert env["POD_IPS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIPs"
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["TERMINATION_GRACE_PERIOD_SECONDS"]["value"] == "30"
    assert set(env) == {
        "POD_NAME", "POD_NAMESPACE", "POD_UID", "POD_IPS", "HOST_IP",
        "TERMINATION_GRACE_PERIOD_SECONDS",
    }  # fmt: skip
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 15120}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 15120}
    security = agent["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    assert volumes["shutdown-coordinator-token"]["secret"]["secretName"] == T.token_secret
    paths = {
        i["path"]: i["fieldRef"]["fieldPath"]
        for i in volumes["shutdown-coordinator-podinfo"]["downwardAPI"]["items"]
    }
    assert paths == {
        "settings.yaml": f"metadata.annotations['{P}/settings']",
        "labels": "metadata.labels",
    }
    annotations = result["metadata"]["annotations"]
    assert annotations[f"{P}/injected"] == "1.2.3"
    assert annotations[ISTIO_EXCLUDE_INBOUND] == "15120"
    assert settings_of(result) == {
        "containers": [{"name": "web", "role": "app", "ports": [8080]}],
        "server": {"port": 15120, "mode": "classic", "token_file": TOKEN_PATH},
        "pod": {"labels_file": "/etc/shutdown-coordinator/labels"},
    }


def test_several_containers_each_get_a_hook_and_the_annotation_can_choose_them() -> None:
    result, _ = inject(pod(app("web", 8080), app("worker"), app("cache", 6379, 6380)))
    names = [c["name"] for c in result["spec"]["containers"]]
    assert names == ["web", "worker", "cache", "shutdown-coordinator"]
    for container in result["spec"]["containers"][:3]:
        assert hook_of(container)["path"] == f"/prestop/{container['name']}"
    assert [c["ports"] for c in settings_of(result)["containers"]] == [[8080], [], [6379, 6380]]
    chosen = pod(app("web"), app("worker"), annotations={f"{P}/containers": "worker, nope"})
    result, plan = inject(chosen)
    assert "lifecycle" not in result["spec"]["containers"][0]
    assert hook_of(result["spec"]["containers"][1])["path"] == "/prestop/worker"
    assert plan.warnings == [f"annotation {P}/containers: no app container nope"]


def test_istio_classic_the_proxy_is_hooked_released_last_and_envoy_is_driven() -> None:
    result, _ = inject(pod(app("web", 8080), proxy()))
    assert hook_of(named(result["spec"]["containers"], "istio-proxy"))["path"] == (
        "/prestop/istio-proxy"
    )
    settings = settings_of(result)
    assert settings["containers"][-1] == {
        "name": "istio-proxy", "role": "proxy", "ports": [15006, 15090]
    }  # fmt: skip
    assert settings["envoy"] == {
        "admin_url": "http://127.0.0.1:15000",
        "pilot_agent_url": "http://127.0.0.1:15020",
    }


def test_istio_native_the_agent_is_declared_before_the_proxy_so_it_stops_after_it() -> None:
    init = {"name": "istio-init", "image": "istio/proxyv2"}
    source = pod(
        app("web", 8080),
        initContainers=[init, proxy(restartPolicy="Always")],
        annotations={f"{P}/mode": "native"},
    )
    result, _ = inject(source)
    inits = result["spec"]["initContainers"]
    # Native sidecars stop in reverse order of declaration (C3).
    assert [c["name"] for c in inits] == ["istio-init", "shutdown-coordinator", "istio-proxy"]
    assert inits[1]["restartPolicy"] == "Always"
    assert hook_of(inits[2])["path"] == "/prestop/istio-proxy"
    assert [c["name"] for c in result["spec"]["containers"]] == ["web"]
    assert settings_of(result)["server"]["mode"] == "native"


def test_native_without_init_containers_creates_the_list() -> None:
    result, _ = inject(pod(app("web"), annotations={f"{P}/mode": "native"}))
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["shutdown-coordinator"]


def test_a_bad_mode_annotation_warns_and_uses_the_template() -> None:
    result, plan = inject(pod(app("web"), annotations={f"{P}/mode": "sidecar"}))
    assert "initContainers" not in result["spec"]
    assert plan.warnings == [
        f"annotation {P}/mode: expected classic or native, got 'sidecar'; using classic"
    ]


@pytest.mark.parametrize(
    "source",
    [
        pod(app("web", 8080)),
        pod(app("web", 8080), proxy()),
        pod(app("web"), initContainers=[proxy(restartPolicy="Always")],
            annotations={f"{P}/mode": "native", f"{P}/quiet-window-seconds": "3"}),
        pod(app("web", lifecycle={"preStop": {"httpGet": {"path": "/off", "port": 8080}}})),
        pod(app("web"), annotations={ISTIO_EXCLUDE_INBOUND: "15020,15021"}),
    ],
    ids=["plain", "istio", "native", "kept-prestop", "excluded"],
)  # fmt: skip
def test_injecting_twice_equals_injecting_once(source: dict[str, Any]) -> None:
    once, _ = inject(source)
    again = plan_patch(once, T, namespace="shop", token=TOKEN)
    assert again.refused is None
    assert again.patch == []
    assert jsonpatch.apply_patch(once, again.patch) == once


def test_a_proxy_added_after_injection_gets_its_hook_on_reinvocation() -> None:
    once, _ = inject(pod(app("web", 8080)))
    once["spec"]["containers"].append(proxy())  # Istio's webhook ran after ours
    twice, _plan = inject(once)
    assert hook_of(named(twice["spec"]["containers"], "istio-proxy"))["port"] == 15120
    assert settings_of(twice)["containers"][-1]["role"] == "proxy"
    assert [c["name"] for c in twice["spec"]["containers"]].count("shutdown-coordinator") == 1
    assert plan_patch(twice, T, token=TOKEN).patch == []


def test_a_marker_of_another_version_is_refused_and_left_alone() -> None:
    source = pod(app("web"), annotations={f"{P}/injected": "0.9"})
    plan = plan_patch(source, T, token=TOKEN)
    assert plan.patch == []
    assert plan.refused is not None
    assert "version 0.9" in plan.refused


def test_an_existing_httpget_prestop_is_kept_as_the_offline_call() -> None:
    prestop = {"httpGet": {"path": "/drain", "port": "http", "httpHeaders": [
        {"name": "X-Why", "value": "shutdown"}]}}  # fmt: skip
    web = app("web", lifecycle={"preStop": prestop, "postStart": {"exec": {"command": ["x"]}}})
    web["ports"] = [{"name": "http", "containerPort": 8080}]
    result, plan = inject(pod(web))
    container = result["spec"]["containers"][0]
    assert hook_of(container)["path"] == "/prestop/web"
    assert container["lifecycle"]["postStart"] == {"exec": {"command": ["x"]}}
    assert settings_of(result)["offline_calls"] == [
        {
            "name": "prestop-web",
            "method": "GET",
            "url": "http://127.0.0.1:8080/drain",
            "headers": [{"name": "X-Why", "value": "shutdown"}],
            "expect_statuses": [200, 201, 202, 204],
        }
    ]
    assert plan.warnings == ["container web: its httpGet preStop becomes the agent's offline call"]


def test_an_exec_prestop_leaves_the_container_alone_and_skip_leaves_any() -> None:
    exec_hook = {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    result, plan = inject(pod(app("web"), app("batch", lifecycle=exec_hook)))
    assert result["spec"]["containers"][1]["lifecycle"] == exec_hook
    assert [c["name"] for c in settings_of(result)["containers"]] == ["web"]
    assert plan.warnings == [
        (
            "container batch: its exec or tcpSocket preStop cannot be run by the agent; "
            "left alone, not coordinated"
        )
    ]
    http_hook = {"preStop": {"httpGet": {"path": "/off", "port": 8080}}}
    skip = InjectionTemplate(version="1", existing_prestop="skip")
    result, plan = inject(pod(app("web"), app("api", lifecycle=http_hook)), skip)
    assert result["spec"]["containers"][1]["lifecycle"] == http_hook
    assert "existing_prestop: skip" in plan.warnings[0]


def test_a_sleep_prestop_is_replaced_with_a_warning() -> None:
    result, plan = inject(pod(app("web", lifecycle={"preStop": {"sleep": {"seconds": 5}}})))
    assert hook_of(result["spec"]["containers"][0])["path"] == "/prestop/web"
    assert "sleep preStop is replaced" in plan.warnings[0]


def test_only_containers_with_their_own_exec_prestop_means_refused() -> None:
    source = pod(app("web", lifecycle={"preStop": {"exec": {"command": ["x"]}}}))
    plan = plan_patch(source, T, token=TOKEN)
    assert plan.refused == "no app container left to coordinate"
    assert plan.patch == []


def test_an_existing_exclude_inbound_ports_is_merged() -> None:
    result, _ = inject(pod(app("web"), annotations={ISTIO_EXCLUDE_INBOUND: "15020, 9090"}))
    assert result["metadata"]["annotations"][ISTIO_EXCLUDE_INBOUND] == "15020,9090,15120"
    result, _ = inject(pod(app("web"), annotations={ISTIO_EXCLUDE_INBOUND: "15120"}))
    assert result["metadata"]["annotations"][ISTIO_EXCLUDE_INBOUND] == "15120"


def test_no_ports_and_no_metadata_still_inject() -> None:
    source = {"spec": {"containers": [{"name": "job", "image": "j"}]}}
    result, _ = inject(source)
    assert settings_of(result)["containers"] == [{"name": "job", "role": "app", "ports": []}]


def test_init_containers_are_left_as_they_are() -> None:
    init = {"name": "migrate", "image": "m", "command": ["migrate"]}
    result, _ = inject(pod(app("web"), initContainers=[init]))
    assert result["spec"]["initContainers"] == [init]
    assert [c["name"] for c in settings_of(result)["containers"]] == ["web"]


def test_host_network_is_refused_with_a_reason() -> None:
    plan = plan_patch(pod(app("web"), hostNetwork=True), T, token=TOKEN)
    assert plan.patch == []
    assert plan.refused is not None
    assert plan.refused.startswith("hostNetwork")


@pytest.mark.parametrize(
    ("source", "token", "reason"),
    [
        (pod(app("web")), None, "no hook token: the Secret shutdown-coordinator-token"),
        (pod(app("web", 15120)), TOKEN, "container web already uses port 15120"),
        (pod(app("web"), annotations={f"{P}/inject": "false"}), TOKEN, "annotation"),
        ({"spec": {"containers": "web"}}, TOKEN, "spec.containers: expected a list"),
        ({"spec": {"containers": [{"image": "x"}]}}, TOKEN, "spec.containers[0]: expected"),
        ({"metadata": [], "spec": {}}, TOKEN, "metadata: expected a mapping"),
        ({"spec": {"containers": [{"name": "a"}], "terminationGracePeriodSeconds": "x"}},
         TOKEN, "spec.terminationGracePeriodSeconds"),
    ],
)  # fmt: skip
def test_refusals_name_their_reason(source: dict[str, Any], token: str | None, reason: str) -> None:
    plan = plan_patch(source, T, namespace="shop", token=token)
    assert plan.patch == []
    assert plan.refused is not None
    assert plan.refused.startswith(reason)


def test_a_grace_too_short_for_the_plan_warns() -> None:
    _, plan = inject(pod(app("web"), proxy(), terminationGracePeriodSeconds=5))
    assert plan.warnings == [
        (
            "terminationGracePeriodSeconds 5 is short: the app is released by 3 s, a drain needs "
            "about 5 s"
        )
    ]
    _, plan = inject(pod(app("web"), proxy(), terminationGracePeriodSeconds=10))
    assert plan.warnings == []
