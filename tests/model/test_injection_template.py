"""The template's shared agent settings and extra Secrets: merged under each pod's, checked once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from sidecar.errors import ConfigError
from sidecar.model.injection import plan_patch
from sidecar.model.injection_settings import template_from
from sidecar.settings import load
from sidecar.settings.injection import InjectionTemplate

TOKEN = "0123456789abcdef-token"
P = "shutdown-coordinator.io"
ETCD = {
    "kind": "etcd",
    "name": "orders",
    "endpoints": ["http://etcd.registry:2379"],
    "prefix": "/services/orders/{pod.ip}:8080",
    "username": "sidecar",
    "password_file": "/var/run/etcd-credentials/password",
}


def pod(*, proxy: bool = False, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [
        {"name": "web", "image": "w", "ports": [{"containerPort": 8080}]}
    ]
    if proxy:
        containers.append({"name": "istio-proxy", "image": "istio/proxyv2"})
    metadata = {"name": "p", "annotations": annotations or {}}
    return {"metadata": metadata, "spec": {"containers": containers}}


def injected(template: InjectionTemplate, source: dict[str, Any]) -> dict[str, Any]:
    plan = plan_patch(source, template, namespace="shop", token=TOKEN)
    assert plan.refused is None, plan.refused
    result: dict[str, Any] = jsonpatch.apply_patch(source, plan.patch)
    return result


def agent_loads(result: dict[str, Any], tmp_path: Path) -> Any:
    """The settings annotation loaded by the agent as its settings file, as the pod would."""
    text = result["metadata"]["annotations"][f"{P}/settings"]
    # The pod's mounts, as files of this test: the token Secret and the downward-API labels.
    text = text.replace("/var/run/shutdown-coordinator/token", str(tmp_path / "token"))
    text = text.replace("/etc/shutdown-coordinator/labels", str(tmp_path / "labels"))
    (tmp_path / "settings.yaml").write_text(text)
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "labels").write_text('app="web"\n')
    environ = {"POD_NAME": "p", "POD_NAMESPACE": "shop"}
    return load(str(tmp_path / "settings.yaml"), environ)


def test_every_pod_gets_the_templates_registry_and_annotations_still_tune(tmp_path: Path) -> None:
    template = template_from(
        {"agent_settings": {"registries": [ETCD], "phases": {"drain_max_seconds": 20}}}
    )
    tuned = {f"{P}/drain-max-seconds": "12"}
    settings = agent_loads(injected(template, pod(annotations=tuned)), tmp_path)
    (registry,) = settings.registries
    assert (registry.kind, registry.name, registry.password_file) == (
        "etcd",
        "orders",
        "/var/run/etcd-credentials/password",
    )
    assert settings.phases.drain_max_seconds == 12  # the pod's annotation wins
    assert [c.name for c in settings.containers] == ["web"]  # derived from the pod, not shared


def test_the_template_names_a_plain_envoys_admin_and_no_pilot_agent(tmp_path: Path) -> None:
    """Istio's admin ports are the default; a template for another Envoy replaces them."""
    istio = agent_loads(injected(InjectionTemplate(), pod(proxy=True)), tmp_path)
    assert (istio.envoy.admin_url, istio.envoy.pilot_agent_url) == (
        "http://127.0.0.1:15000",
        "http://127.0.0.1:15020",
    )
    plain = template_from(
        {
            "agent_settings": {
                "envoy": {"admin_url": "http://127.0.0.1:9901", "pilot_agent_url": None}
            }
        }
    )
    settings = agent_loads(injected(plain, pod(proxy=True)), tmp_path)
    assert (settings.envoy.admin_url, settings.envoy.pilot_agent_url) == (
        "http://127.0.0.1:9901",
        None,
    )


def test_the_templates_offline_calls_come_before_those_kept_from_prestops(tmp_path: Path) -> None:
    call = {"name": "flush", "method": "POST", "url": "http://127.0.0.1:8080/flush"}
    template = template_from({"agent_settings": {"offline_calls": [call]}})
    source = pod()
    source["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"httpGet": {"path": "/bye", "port": 8080}}
    }
    settings = agent_loads(injected(template, source), tmp_path)
    assert [c.name for c in settings.offline_calls] == ["flush", "prestop-web"]


def test_secrets_are_mounted_read_only_and_optional_once(tmp_path: Path) -> None:
    template = template_from(
        {
            "agent_settings": {"registries": [ETCD]},
            "secret_mounts": {"etcd-credentials": "/var/run/etcd-credentials"},
        }
    )
    result = injected(template, pod())
    again = plan_patch(result, template, namespace="shop", token=TOKEN)
    assert again.patch == []  # idempotent, the extra volume included
    volume = next(
        v
        for v in result["spec"]["volumes"]
        if v.get("secret", {}).get("secretName") == "etcd-credentials"
    )
    assert volume["secret"]["optional"] is True  # a namespace without it still runs its pods
    agent = next(c for c in result["spec"]["containers"] if c["name"] == template.container_name)
    mount = next(m for m in agent["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {
        "name": volume["name"],
        "mountPath": "/var/run/etcd-credentials",
        "readOnly": True,
    }


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (
            {"agent_settings": {"containers": [{"name": "x"}]}},
            "agent_settings.containers: injection sets it",
        ),
        ({"agent_settings": {"server": {"port": 1}}}, "agent_settings.server: injection sets it"),
        (
            {"agent_settings": {"phases": {"drain_max_seconds": -1}}},
            "agent_settings.phases.drain_max_seconds",
        ),
        ({"agent_settings": {"registries": [{"kind": "etcd"}]}}, "agent_settings.registries[0]"),
        ({"agent_settings": ["not", "a", "mapping"]}, "agent_settings: expected a mapping"),
        ({"secret_mounts": {"creds": "relative/dir"}}, "secret_mounts: expected Secret names"),
        ({"secret_mounts": {"creds": "/var/run/shutdown-coordinator"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"creds": "/etc"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"Bad_Name": "/etc/creds"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"a": "/etc/creds", "b": "/etc/creds/"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"a": "/etc/creds", "b": "/etc/creds/x"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"a": "/usr"}}, "secret_mounts: expected"),
        ({"secret_mounts": {"a": "/var/run/secrets"}}, "secret_mounts: expected"),
        (
            {"agent_settings": {"phases": {"quiesce_min_seconds": dt.date(2020, 1, 1)}}},
            "agent_settings: expected a mapping of plain values",
        ),
        (
            {"agent_settings": {"traffic": {1: 2}}},
            "agent_settings: expected a mapping of plain values",
        ),
        (
            {"agent_settings": {"phases": {"quiesce_min_seconds": b"x"}}},
            "agent_settings: expected a mapping of plain values",
        ),
    ],
)
def test_a_bad_template_is_refused_naming_the_key(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        template_from(data)
    assert str(refused.value).startswith("invalid template: ")
    assert named in str(refused.value)


def test_the_shared_settings_are_copied_never_shared_between_pods() -> None:
    template = template_from({"agent_settings": {"registries": [ETCD]}})
    first = injected(template, pod())
    first_settings = json.loads(first["metadata"]["annotations"][f"{P}/settings"])
    first_settings["registries"][0]["name"] = "changed"
    assert template.agent_settings["registries"][0]["name"] == "orders"  # type: ignore[index]


def test_the_documented_template_is_read_as_written() -> None:
    """docs/injection.md's example template is one the injector accepts."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "injection.md"
    section = docs.read_text().split("## Settings every pod shares", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    template = template_from(yaml.safe_load(example))
    assert template.secret_mounts == {"etcd-credentials": "/var/run/etcd-credentials"}
    assert template.agent_settings["phases"] == {"drain_max_seconds": 20}


def test_null_groups_in_the_shared_settings_are_as_if_absent(tmp_path: Path) -> None:
    """`envoy: null` or `offline_calls: null` in a template must not break meshed pods."""
    template = template_from({"agent_settings": {"envoy": None, "offline_calls": None}})
    source = pod(proxy=True)
    source["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"httpGet": {"path": "/bye", "port": 8080}}
    }
    settings = agent_loads(injected(template, source), tmp_path)
    assert settings.envoy.admin_url == "http://127.0.0.1:15000"
    assert [c.name for c in settings.offline_calls] == ["prestop-web"]


def test_a_mount_path_is_written_normalised() -> None:
    template = template_from({"secret_mounts": {"creds": "/etc/creds/"}})
    assert template.secret_mounts == {"creds": "/etc/creds"}
