"""Settings by annotation: validated by the agent's schema, rendered as a file the agent loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.model.injection import plan_patch
from sidecar.model.injection_settings import checked_settings, render, tunable_keys
from sidecar.settings import load
from sidecar.settings.injection import InjectionTemplate

TOKEN = "0123456789abcdef-token"
T = InjectionTemplate(version="1")
P = "shutdown-coordinator.io"


def pod(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    containers = [{"name": "web", "image": "w", "ports": [{"containerPort": 8080}]}]
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": containers, **spec},
    }


def rendered(annotations: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    plan = plan_patch(pod(annotations), T, token=TOKEN)
    assert plan.refused is None
    result = jsonpatch.apply_patch(pod(annotations), plan.patch)
    text = result["metadata"]["annotations"][f"{P}/settings"]
    loaded: dict[str, Any] = json.loads(text)
    return loaded, plan.warnings


def test_good_annotations_become_settings_by_full_and_short_key() -> None:
    loaded, warnings = rendered(
        {
            f"{P}/quiet-window-seconds": "3",
            f"{P}/envoy.request-timeout-seconds": "0.5",
            f"{P}/kubernetes.events": "false",
            f"{P}/traffic.ignore-peers": "10.0.0.0/8, fd00::/8",
            f"{P}/when_unconfirmed": "restart",
        }
    )
    assert warnings == []
    assert loaded["phases"] == {"quiet_window_seconds": 3}
    assert loaded["envoy"] == {"request_timeout_seconds": 0.5}
    assert loaded["kubernetes"] == {"events": False, "when_unconfirmed": "restart"}
    assert loaded["traffic"] == {"ignore_peers": ["10.0.0.0/8", "fd00::/8"]}


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        ("quiet-window-seconds", "0", "expected at least 0.05, got 0"),
        ("request-timeout-seconds", "1", "unknown setting"),  # envoy's or kubernetes'?
        ("server.port", "8080", "unknown setting"),  # the template's, not the pod's
        ("token", "x" * 20, "unknown setting"),
        ("events", "maybe", "expected true or false, got 'maybe'"),
        ("admin-url", "ftp://x", "expected an http:// or https:// URL, got 'ftp://x'"),
        ("source", "tcpdump", "expected one of auto, netlink, proc, got 'tcpdump'"),
        ("quiet-window-seconds", "3\u00e9", "expected printable ASCII text"),
        ("enabled", "perhaps", "expected one of auto, true, false, got 'perhaps'"),
    ],
)
def test_a_bad_annotation_warns_and_is_skipped(annotation: str, value: str, expected: str) -> None:
    loaded, warnings = rendered({f"{P}/{annotation}": value})
    assert len(warnings) == 1
    assert warnings[0].startswith(f"annotation {P}/{annotation} skipped: ")
    assert warnings[0].endswith(expected)
    assert set(loaded) == {"containers", "server", "pod"}


def test_a_combination_the_cross_field_rules_refuse_keeps_the_first() -> None:
    loaded, warnings = rendered({f"{P}/quiesce-max-seconds": "1", f"{P}/quiesce-min-seconds": "5"})
    assert loaded["phases"] == {"quiesce_max_seconds": 1}
    assert "expected at most quiesce_max_seconds" in warnings[0]


def test_every_tunable_key_is_reachable_by_its_full_name() -> None:
    keys = tunable_keys()
    assert keys["phases.quiet_window_seconds"][:2] == ("phases", "quiet_window_seconds")
    assert "request_timeout_seconds" not in keys  # two groups have it: full names only
    assert "server.token" not in keys
    assert "server.idle_sigterm_linger_seconds" in keys


@pytest.mark.parametrize("value", [1e20, 1e-07, 0.5, 3.0, -2.5e-300])
def test_render_keeps_floats_floats_for_yaml(value: float) -> None:
    assert yaml.safe_load(render({"x": [value]})) == {"x": [value]}


def test_the_rendered_settings_load_in_the_agent_from_the_mounted_files(tmp_path: Path) -> None:
    annotations = {f"{P}/quiet-window-seconds": "3", f"{P}/drain-max-seconds": "1e3"}
    plan = plan_patch(pod(annotations), T, token=TOKEN)
    result = jsonpatch.apply_patch(pod(annotations), plan.patch)
    text = result["metadata"]["annotations"][f"{P}/settings"]
    # The files the kubelet writes: the annotation, the labels, the Secret's key.
    text = text.replace("/var/run/shutdown-coordinator/token", str(tmp_path / "token"))
    text = text.replace("/etc/shutdown-coordinator/labels", str(tmp_path / "labels"))
    (tmp_path / "settings.yaml").write_text(text)
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "labels").write_text('app="web"\n')
    environ = {"POD_NAME": "p", "POD_NAMESPACE": "shop", "TERMINATION_GRACE_PERIOD_SECONDS": "30"}
    loaded = load(str(tmp_path / "settings.yaml"), environ)
    assert loaded.server.token == TOKEN
    assert loaded.server.port == 15120
    assert loaded.phases.quiet_window_seconds == 3.0
    assert loaded.phases.drain_max_seconds == 1000.0
    assert loaded.pod.labels == {"app": "web"}
    assert [c.name for c in loaded.containers] == ["web"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(sorted(tunable_keys())).map(lambda k: f"{P}/{k.replace('_', '-')}"),
            st.text(max_size=30).map(lambda k: f"{P}/{k}"),
            st.sampled_from([f"{P}/mode", f"{P}/containers", f"{P}/settings", f"{P}/inject"]),
        ),
        st.one_of(st.text(max_size=40), st.sampled_from(["1e999", "nan", "-0", "true", ""])),
        max_size=6,
    )
)
def test_arbitrary_annotation_values_never_raise_only_warn(annotations: dict[str, str]) -> None:
    plan = plan_patch(pod(annotations), T, token=TOKEN)
    assert all(len(w) <= 120 for w in plan.warnings)
    if plan.refused is None:
        result = jsonpatch.apply_patch(pod(annotations), plan.patch)
        text = result["metadata"]["annotations"][f"{P}/settings"]
        assert isinstance(yaml.safe_load(text), dict)  # the agent's file is YAML
    else:
        assert plan.patch == []


def test_a_remembered_verdict_is_the_same_verdict_refusals_included() -> None:
    """The pods of one workload share annotations, so verdicts are remembered; never changed."""
    good = {"containers": [{"name": "web", "ports": [8080]}], "phases": {"quiet_window_seconds": 3}}
    bad = {"containers": [{"name": "web"}], "phases": {"quiet_window_seconds": -1}}
    first, again = checked_settings(good), checked_settings(json.loads(json.dumps(good)))
    assert first == again
    assert first.phases.quiet_window_seconds == 3
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"phases\.quiet_window_seconds"):
            checked_settings(bad)


def test_settings_too_large_to_remember_are_still_checked() -> None:
    """Beyond the remembered size the check runs each time and still refuses what is wrong."""
    huge = {"containers": [{"name": "web"}], "pod": {"labels": {"k": "v" * 20_000}}}
    assert checked_settings(huge).pod.labels["k"] == "v" * 20_000
    with pytest.raises(ConfigError, match="unknown key"):
        checked_settings({**huge, "nonsense": 1})
