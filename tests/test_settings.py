from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sidecar import settings
from sidecar.errors import ConfigError

TOKEN = "0123456789abcdef0123"
MINIMAL = {"containers": [{"name": "app", "ports": [8080]}], "server": {"token": TOKEN}}


def test_minimal_settings_get_documented_defaults() -> None:
    loaded = settings.from_mapping(MINIMAL, {})
    assert loaded.containers[0] == settings.ContainerSpec("app", "app", (8080,), ())
    assert loaded.release_order == (("app",),)
    assert loaded.server.port == 15120
    assert loaded.server.mode == "classic"
    assert loaded.budget.grace_seconds == 30.0
    assert loaded.proxy is None
    assert repr(loaded.server.token) == "Secret('***')"


def test_downward_api_environment_fills_the_pod_identity_and_grace() -> None:
    env = {
        "POD_NAME": "web-1",
        "POD_NAMESPACE": "shop",
        "POD_UID": "u-1",
        "POD_IPS": "10.1.2.3, fd00::3",
        "HOST_IP": "10.0.0.1",
        "TERMINATION_GRACE_PERIOD_SECONDS": "45",
        "SHUTDOWN_COORDINATOR_TOKEN": "f" * 20,
    }
    loaded = settings.from_mapping({"containers": [{"name": "app"}]}, env)
    assert loaded.pod == settings.PodIdentity(
        "web-1", "shop", "u-1", ("10.1.2.3", "fd00::3"), "10.0.0.1"
    )
    assert loaded.budget.grace_seconds == 45.0
    assert loaded.server.token == "f" * 20


def test_token_is_read_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    data = {"containers": [{"name": "app"}], "server": {"token_file": str(token_file)}}
    assert settings.from_mapping(data, {}).server.token == TOKEN


def test_full_settings_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        """
containers:
  - {name: app, ports: [8080], process_names: [java]}
  - {name: istio-proxy, role: proxy, ports: [15006]}
server: {token: "0123456789abcdef0123", mode: native, port: 15120}
budget: {grace_seconds: 60, sigterm_reserve_seconds: 10}
phases: {quiet_window_seconds: 3}
traffic: {ignore_peers: ["10.0.0.0/8"], source: proc}
envoy: {admin_url: "http://127.0.0.1:15000/", pilot_agent_url: "http://127.0.0.1:15020"}
"""
    )
    loaded = settings.load(str(path), {})
    assert loaded.proxy is not None
    assert loaded.proxy.name == "istio-proxy"
    assert loaded.server.mode == "native"
    assert loaded.traffic.ignore_peers == (ipaddress.ip_network("10.0.0.0/8"),)
    assert loaded.envoy.admin_url == "http://127.0.0.1:15000"
    assert loaded.phases.quiet_window_seconds == 3.0


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({}, {}, "containers: expected at least one container"),
        ({"containers": [{"name": "App_1"}]}, {}, "containers[0].name: expected a container name"),
        (
            {"containers": [{"name": "a", "ports": [70000]}]},
            {},
            "containers[0].ports[0]: expected a TCP port",
        ),
        (
            {"containers": [{"name": "a", "role": "db"}]},
            {},
            "containers[0].role: expected one of app, proxy",
        ),
        ({"containers": [{"name": "a"}, {"name": "a"}]}, {}, "container 'a' is listed twice"),
        (
            {"containers": [{"name": "p", "role": "proxy"}]},
            {},
            "at least one container with role app",
        ),
        (
            {**MINIMAL, "budget": {"grace_seconds": "30s"}},
            {},
            "budget.grace_seconds: expected a number",
        ),
        (
            {**MINIMAL, "budget": {"grace_seconds": 0.5}},
            {},
            "budget.grace_seconds: expected at least 1.0",
        ),
        (
            {**MINIMAL, "phases": {"quiet_windw_seconds": 2}},
            {},
            "phases.quiet_windw_seconds: unknown key",
        ),
        ({**MINIMAL, "server": {"token": TOKEN, "port": 15001}}, {}, "outside Istio's 15000-15099"),
        ({"containers": [{"name": "a"}]}, {}, "server.token: required"),
        ({**MINIMAL, "server": {"token": "short"}}, {}, "expected at least 16 characters"),
        (
            {**MINIMAL, "envoy": {"admin_url": "localhost:15000"}},
            {},
            "envoy.admin_url: expected an http",
        ),
        (
            {**MINIMAL, "traffic": {"ignore_peers": ["nope"]}},
            {},
            "traffic.ignore_peers[0]: expected an IP",
        ),
        (
            {**MINIMAL, "release_order": [["db"]]},
            {},
            "release_order[0]: 'db' is not an app container",
        ),
        (MINIMAL, {"POD_IPS": "10.0.0.300"}, "POD_IPS: expected IP addresses"),
        (
            MINIMAL,
            {"TERMINATION_GRACE_PERIOD_SECONDS": "soon"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected",
        ),
        (
            {**MINIMAL, "phases": {"quiesce_min_seconds": 9, "quiesce_max_seconds": 5}},
            {},
            "quiesce_min_seconds",
        ),
        ([1, 2], {}, "settings: expected a mapping"),
    ],
)
def test_bad_settings_name_the_key_the_value_and_the_expectation(
    data: object, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        settings.from_mapping(data, env)
    assert message in str(caught.value)


def test_unreadable_or_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        settings.load(str(tmp_path / "missing.yaml"), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("containers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        settings.load(str(bad), {})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


# The first draw pays for building the recursive strategy; that is not the code under test.
@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["containers", "server", "budget", "phases", "traffic", "envoy", "pod", "x"]
        ),
        json_values,
        max_size=5,
    )
)
def test_any_parsed_document_is_accepted_or_refused_with_a_config_error(
    document: dict[str, object],
) -> None:
    try:
        settings.from_mapping(document, {})
    except ConfigError as e:
        message = str(e)
    else:
        message = "accepted"
    assert message


POD_ENV = {"POD_NAME": "web-1", "POD_NAMESPACE": "shop"}


@pytest.mark.parametrize(
    ("section", "environ", "enabled"),
    [
        ({}, {}, False),
        ({}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", **POD_ENV}, True),
        ({}, {"KUBECONFIG": "/home/me/.kube/config", **POD_ENV}, True),
        ({"enabled": False}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, False),
        ({"enabled": True}, POD_ENV, True),
    ],
)
def test_the_api_is_used_in_a_pod_or_with_a_kubeconfig_unless_turned_off(
    section: dict[str, object], environ: dict[str, str], enabled: bool
) -> None:
    loaded = settings.from_mapping({**MINIMAL, "kubernetes": section}, environ)
    assert loaded.kubernetes.enabled is enabled
    assert loaded.kubernetes.when_unconfirmed == "deletion"


def test_the_api_needs_the_pod_name_and_namespace() -> None:
    with pytest.raises(ConfigError, match="POD_NAME and POD_NAMESPACE"):
        settings.from_mapping({**MINIMAL, "kubernetes": {"enabled": True}}, {})


def test_an_unknown_unconfirmed_policy_is_named_in_the_error() -> None:
    data = {**MINIMAL, "kubernetes": {"enabled": False, "when_unconfirmed": "panic"}}
    with pytest.raises(
        ConfigError, match=r"kubernetes.when_unconfirmed: expected one of deletion, restart"
    ):
        settings.from_mapping(data, {})
