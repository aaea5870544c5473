"""The loader: file, environment and downward API together; each bad value named with its key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sidecar import settings
from sidecar.errors import ConfigError
from sidecar.model.http_action import identity_of

TOKEN = "0123456789abcdef0123"
MINIMAL = {"containers": [{"name": "app", "ports": [8080]}], "server": {"token": TOKEN}}


def refused(data: object, env: dict[str, str] | None = None) -> list[str]:
    """The lines of the one ConfigError that `data` gets."""
    with pytest.raises(ConfigError) as caught:
        settings.from_mapping(data, env or {})
    return str(caught.value).splitlines()


def test_minimal_settings_get_documented_defaults() -> None:
    loaded = settings.from_mapping(MINIMAL, {})
    assert loaded.containers[0] == settings.ContainerSpec("app", "app", (8080,), ())
    assert loaded.release_order == (("app",),)
    assert loaded.server.port == 15120
    assert loaded.server.mode == "classic"
    assert loaded.budget.grace_seconds == 30.0
    assert loaded.proxy is None
    assert loaded.container("app") is loaded.containers[0]
    assert loaded.container("db") is None
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


def test_the_downward_api_overrides_the_file_and_the_grace_only_fills_in() -> None:
    data = {
        **MINIMAL,
        "pod": {"name": "from-file", "ips": ["10.9.9.9"], "host_ip": "10.0.0.9"},
        "budget": {"grace_seconds": 60},
    }
    env = {"POD_NAME": "web-1", "POD_IP": "10.1.2.3", "TERMINATION_GRACE_PERIOD_SECONDS": "45"}
    loaded = settings.from_mapping(data, env)
    assert loaded.pod.name == "web-1"
    assert loaded.pod.ips == ("10.1.2.3",)
    assert loaded.pod.host_ip == "10.0.0.9"
    assert loaded.budget.grace_seconds == 60.0
    # An empty variable is as good as unset.
    assert settings.from_mapping(data, {"POD_NAME": ""}).pod.name == "from-file"


def test_token_is_read_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    data = {"containers": [{"name": "app"}], "server": {"token_file": str(token_file)}}
    assert settings.from_mapping(data, {}).server.token == TOKEN


def test_a_short_or_unreadable_token_file_is_named(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    data = {"containers": [{"name": "app"}], "server": {"token_file": str(token_file)}}
    assert refused(data) == ["server.token_file: expected at least 16 characters, got 5"]
    data["server"] = {"token_file": str(tmp_path / "absent")}
    (line,) = refused(data)
    absent = repr(str(tmp_path / "absent"))
    assert line == f"server.token_file: {absent}: cannot read it: No such file or directory"


def test_the_environment_token_wins_and_a_short_one_is_named_without_its_value() -> None:
    assert settings.from_mapping(MINIMAL, {"SHUTDOWN_COORDINATOR_TOKEN": "e" * 16}).server.token
    lines = refused(MINIMAL, {"SHUTDOWN_COORDINATOR_TOKEN": "tiny"})
    assert lines == ["SHUTDOWN_COORDINATOR_TOKEN: expected at least 16 characters, got 4"]


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


def test_no_file_and_an_empty_file_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^no settings file given: pass -c FILE or set "):
        settings.load(None, {})
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=rf"^settings file {str(empty)!r} is empty"):
        settings.load(str(empty), {})


def test_unreadable_or_invalid_files_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=rf"^settings file {str(missing)!r}: cannot read it"):
        settings.load(str(missing), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("containers: [unclosed")
    with pytest.raises(ConfigError) as caught:
        settings.load(str(bad), {})
    assert str(caught.value) == (
        f"settings file {str(bad)!r}: not valid YAML at line 1, column 22: "
        "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)"
    )


def test_every_error_in_a_file_is_reported_at_once() -> None:
    data = {
        "containers": [{"name": "App_1", "ports": [70000]}, {"name": "b", "role": "db"}],
        "server": {"token": TOKEN, "port": 15001, "tokn": "x"},
        "budget": {"grace_seconds": "30s"},
        "phases": {"quiet_window_seconds": -1},
        "envoy": {"admin_url": "localhost:15000"},
    }
    assert sorted(refused(data, {"POD_IPS": "10.0.0.300"})) == sorted(
        [
            "containers[0].name: expected a container name (DNS label), got 'App_1'",
            "containers[0].ports[0]: expected a TCP port from 1 to 65535, got 70000",
            "containers[1].role: expected one of app, proxy, got 'db'",
            (
                "server.tokn: unknown key (known here: port, host, token, token_file, "
                "allow_unauthenticated, mode, idle_sigterm_linger_seconds)"
            ),
            "server.port: expected a port outside Istio's 15000-15099, got 15001",
            "budget.grace_seconds: expected a number of seconds, got '30s'",
            # The field's own minimum, not the generic one of every number of seconds.
            "phases.quiet_window_seconds: expected at least 0.05, got -1",
            "envoy.admin_url: expected an http:// or https:// URL, got 'localhost:15000'",
            "POD_IPS[0]: expected an IP address, got '10.0.0.300'",
        ]
    )


def test_rules_across_fields_are_reported_together_and_not_twice() -> None:
    data = {
        "containers": [{"name": "a"}, {"name": "a"}],
        "phases": {"quiesce_min_seconds": 9, "quiesce_max_seconds": 5},
        "server": {"token": "short"},
    }
    lines = refused(data)
    assert lines == [
        "server.token: expected at least 16 characters, got 5",
        "containers[1].name: container 'a' is listed twice",
        "phases.quiesce_min_seconds: expected at most quiesce_max_seconds (5.0), got 9.0",
    ]


def test_the_learned_windows_lower_bound_may_not_pass_its_upper_bound() -> None:
    data = {
        "containers": [{"name": "a"}],
        "phases": {"quiet_window_min_seconds": 3, "quiet_window_seconds": 1},
        "server": {"allow_unauthenticated": True},
    }
    assert refused(data) == [
        "phases.quiet_window_min_seconds: expected at most quiet_window_seconds (1.0), got 3.0"
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
groups = ["containers", "release_order", "server", "budget", "phases", "traffic", "envoy"]


# The first draw pays for building the recursive strategy; that is not the code under test.
@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from([*groups, "pod", "kubernetes", "x"]), json_values, max_size=5),
    st.dictionaries(
        st.sampled_from(["POD_IPS", "HOST_IP", "TERMINATION_GRACE_PERIOD_SECONDS", "KUBECONFIG"]),
        st.text(max_size=8),
        max_size=2,
    ),
)
def test_any_parsed_document_is_accepted_or_refused_with_only_a_config_error(
    document: dict[str, object], environ: dict[str, str]
) -> None:
    try:
        settings.from_mapping(document, environ)
    except ConfigError as e:
        lines = str(e).splitlines()
    else:
        lines = []
    assert all(": " in line for line in lines), lines


POD_ENV = {"POD_NAME": "web-1", "POD_NAMESPACE": "shop"}


@pytest.mark.parametrize(
    ("section", "environ", "enabled"),
    [
        ({}, {}, False),
        ({}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", **POD_ENV}, True),
        ({}, {"KUBECONFIG": "/home/me/.kube/config", **POD_ENV}, True),
        ({"enabled": "auto", "kubeconfig": "/k"}, POD_ENV, True),
        ({"enabled": False}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, False),
        ({"enabled": "false"}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, False),
        ({"enabled": True}, POD_ENV, True),
    ],
)
def test_the_api_is_used_in_a_pod_or_with_a_kubeconfig_unless_turned_off(
    section: dict[str, object], environ: dict[str, str], enabled: bool
) -> None:
    loaded = settings.from_mapping({**MINIMAL, "kubernetes": section}, environ)
    assert loaded.kubernetes.enabled is enabled
    assert loaded.kubernetes.when_unconfirmed == "deletion"


def test_the_kubeconfig_of_the_file_wins_over_the_environment() -> None:
    data = {**MINIMAL, "kubernetes": {"enabled": False, "kubeconfig": "/file"}}
    assert settings.from_mapping(data, {"KUBECONFIG": "/env"}).kubernetes.kubeconfig == "/file"
    data = {**MINIMAL, "kubernetes": {"enabled": False}}
    assert settings.from_mapping(data, {"KUBECONFIG": "/env"}).kubernetes.kubeconfig == "/env"


def test_the_api_needs_the_pod_name_and_namespace() -> None:
    (line,) = refused({**MINIMAL, "kubernetes": {"enabled": True}})
    assert line.startswith("kubernetes: the API is on, so POD_NAME and POD_NAMESPACE")


def test_an_unknown_switch_or_unconfirmed_policy_is_named_in_the_error() -> None:
    data = {**MINIMAL, "kubernetes": {"enabled": "maybe", "when_unconfirmed": "panic"}}
    assert refused(data) == [
        "kubernetes.enabled: expected one of auto, true, false, got 'maybe'",
        "kubernetes.when_unconfirmed: expected one of deletion, restart, got 'panic'",
    ]


def test_the_pods_labels_come_from_the_downward_api_file_over_the_inline_ones(
    tmp_path: Path,
) -> None:
    labels = tmp_path / "labels"
    labels.write_text('app="web"\ntier="front \\"edge\\""\n', encoding="utf-8")
    pod = {"labels": {"app": "old", "team": "shop"}, "labels_file": str(labels)}
    loaded = settings.from_mapping({**MINIMAL, "pod": pod}, {})
    assert loaded.pod.labels == {"app": "web", "tier": 'front "edge"', "team": "shop"}
    assert identity_of(loaded.pod).labels == loaded.pod.labels


def test_a_labels_file_line_that_is_not_key_quoted_value_is_named(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text('app="web"\ntier=front\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        settings.from_mapping({**MINIMAL, "pod": {"labels_file": str(labels)}}, {})
    assert str(raised.value) == (
        "pod.labels_file line 2: expected a line key=\"value\", got 'tier=front'"
    )
