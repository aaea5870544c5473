"""Each kind of bad setting is refused with its full key, the bad value and what was expected."""

from __future__ import annotations

import pytest

from sidecar import settings
from sidecar.errors import ConfigError

TOKEN = "0123456789abcdef0123"
MINIMAL = {"containers": [{"name": "app", "ports": [8080]}], "server": {"token": TOKEN}}
UNAUTHENTICATED = {"server": {"allow_unauthenticated": True}}


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({}, {}, "containers: required, but not set"),
        (
            {"containers": [], **UNAUTHENTICATED},
            {},
            "containers: expected at least one container whose hook we answer",
        ),
        (
            {"containers": [{"name": "App_1"}]},
            {},
            "containers[0].name: expected a container name (DNS label), got 'App_1'",
        ),
        ({"containers": [{"role": "app"}]}, {}, "containers[0].name: required, but not set"),
        (
            {"containers": [{"name": "a", "ports": [70000]}]},
            {},
            "containers[0].ports[0]: expected a TCP port from 1 to 65535, got 70000",
        ),
        (
            {"containers": [{"name": "a", "ports": [True]}]},
            {},
            "containers[0].ports[0]: expected an integer, got True",
        ),
        (
            {"containers": [{"name": "a", "role": "db"}]},
            {},
            "containers[0].role: expected one of app, proxy, got 'db'",
        ),
        (
            {"containers": [{"name": "a"}, {"name": "a"}], **UNAUTHENTICATED},
            {},
            "containers[1].name: container 'a' is listed twice",
        ),
        (
            {"containers": [{"name": "p", "role": "proxy"}], **UNAUTHENTICATED},
            {},
            "containers: expected at least one container with role app",
        ),
        (
            {
                "containers": [{"name": "a"}, {"name": "p", "role": "proxy"}] * 1
                + [{"name": "q", "role": "proxy"}],
                **UNAUTHENTICATED,
            },
            {},
            "containers: expected at most one container with role proxy",
        ),
        (
            {**MINIMAL, "budget": {"grace_seconds": "30s"}},
            {},
            "budget.grace_seconds: expected a number of seconds, got '30s'",
        ),
        (
            {**MINIMAL, "budget": {"grace_seconds": 0.5}},
            {},
            "budget.grace_seconds: expected at least 1.0, got 0.5",
        ),
        (
            {**MINIMAL, "budget": {"answer_margin_seconds": float("nan")}},
            {},
            "budget.answer_margin_seconds: expected a number of seconds, got nan",
        ),
        (
            {**MINIMAL, "phases": {"quiet_windw_seconds": 2}},
            {},
            "phases.quiet_windw_seconds: unknown key (known here: unroute_fallback_delay_seconds,",
        ),
        ({**MINIMAL, "nope": 1}, {}, "nope: unknown key (known here: containers, release_order,"),
        (
            {**MINIMAL, "server": {"token": TOKEN, "port": 15001}},
            {},
            "server.port: expected a port outside Istio's 15000-15099, got 15001",
        ),
        (
            {"containers": [{"name": "a"}]},
            {},
            "server.token: required (set SHUTDOWN_COORDINATOR_TOKEN or server.token_file)",
        ),
        (
            {**MINIMAL, "server": {"token": "short"}},
            {},
            "server.token: expected at least 16 characters, got 5",
        ),
        (
            {**MINIMAL, "server": {"token": TOKEN, "allow_unauthenticated": "yes"}},
            {},
            "server.allow_unauthenticated: expected true or false, got 'yes'",
        ),
        (
            {**MINIMAL, "envoy": {"admin_url": "localhost:15000"}},
            {},
            "envoy.admin_url: expected an http:// or https:// URL, got 'localhost:15000'",
        ),
        (
            {**MINIMAL, "envoy": {"admin_url": 15000}},
            {},
            "envoy.admin_url: expected a string, got 15000",
        ),
        (
            {**MINIMAL, "traffic": {"ignore_peers": ["nope"]}},
            {},
            "traffic.ignore_peers[0]: expected an IP address or CIDR, got 'nope'",
        ),
        (
            {**MINIMAL, "traffic": {"ignore_peers": "10.0.0.0/8"}},
            {},
            "traffic.ignore_peers: expected a list, got '10.0.0.0/8'",
        ),
        (
            {**MINIMAL, "release_order": [["db"]]},
            {},
            "release_order[0]: 'db' is not an app container (apps: app)",
        ),
        (
            {**MINIMAL, "release_order": [[]]},
            {},
            "release_order[0]: expected a non-empty list of container names, got []",
        ),
        (
            {**MINIMAL, "release_order": [["app"], ["app"]]},
            {},
            "release_order[1]: 'app' is already in an earlier group",
        ),
        (
            {
                "containers": [{"name": "a"}, {"name": "b"}],
                "release_order": [["a"]],
                **UNAUTHENTICATED,
            },
            {},
            "release_order: every app container must be listed; missing b",
        ),
        (
            MINIMAL,
            {"POD_IPS": "10.0.0.300"},
            "POD_IPS[0]: expected an IP address, got '10.0.0.300'",
        ),
        (MINIMAL, {"HOST_IP": "node-1"}, "HOST_IP: expected an IP address, got 'node-1'"),
        (
            {**MINIMAL, "pod": {"ips": ["x"]}},
            {},
            "pod.ips[0]: expected an IP address, got 'x'",
        ),
        (
            MINIMAL,
            {"TERMINATION_GRACE_PERIOD_SECONDS": "soon"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got 'soon'",
        ),
        (
            {**MINIMAL, "phases": {"quiesce_min_seconds": 9, "quiesce_max_seconds": 5}},
            {},
            "phases.quiesce_min_seconds: expected at most quiesce_max_seconds (5.0), got 9.0",
        ),
        ([1, 2], {}, "settings: expected a mapping, got [1, 2]"),
        ({**MINIMAL, "server": [1]}, {}, "server: expected a mapping, got [1]"),
    ],
)
def test_bad_settings_name_the_key_the_value_and_the_expectation(
    data: object, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings.from_mapping(data, env)
    assert any(line.startswith(message) for line in str(caught.value).splitlines()), caught.value
