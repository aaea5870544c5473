"""Anything at all as settings ends in valid Settings or one bounded ConfigError, nothing else."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sidecar import settings
from sidecar.errors import ConfigError
from sidecar.settings.loader import ERRORS_MAX, LINE_MAX_CHARS

#: Every key the schema knows, so that generated documents reach deep into it.
KEYS = sorted(
    {
        f.name
        for cls in (
            settings.Settings,
            settings.ServerSettings,
            settings.BudgetSettings,
            settings.PhaseSettings,
            settings.TrafficSettings,
            settings.EnvoySettings,
            settings.KubernetesSettings,
            settings.PodIdentity,
            settings.ContainerSpec,
        )
        for f in dataclasses.fields(cls)
    }
    | {"kind", "url", "body", "headers", "name", "value", "file", "verify", "deregister"}
)
ENVIRONMENT = (
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_UID",
    "POD_IPS",
    "POD_IP",
    "HOST_IP",
    "TERMINATION_GRACE_PERIOD_SECONDS",
    "SHUTDOWN_COORDINATOR_TOKEN",
    "KUBERNETES_SERVICE_HOST",
    "KUBECONFIG",
)
FAST = hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["app", "proxy", "http", "auto", "10.0.0.1", "http://x/{pod.name}"])
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
environments = st.dictionaries(st.sampled_from(ENVIRONMENT), st.text(max_size=24), max_size=4)


def outcome(run: typing.Callable[[], settings.Settings]) -> list[str]:
    """The error lines of `run`, each checked to be short; none when it loaded."""
    try:
        loaded = run()
    except ConfigError as e:
        lines = str(e).splitlines()
        assert 1 <= len(lines) <= ERRORS_MAX + 1
        assert all(0 < len(line) <= LINE_MAX_CHARS and ": " in line for line in lines), lines
        return lines
    assert isinstance(loaded, settings.Settings)
    return []


@FAST
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), documents, max_size=6))
def test_any_document_loads_or_is_refused_with_short_lines(document: dict[Any, Any]) -> None:
    outcome(lambda: settings.from_mapping(document, {}))


@FAST
@given(environments)
def test_any_environment_loads_or_is_refused_naming_the_variable(environ: dict[str, str]) -> None:
    base = {"containers": [{"name": "app"}], "server": {"allow_unauthenticated": True}}
    for line in outcome(lambda: settings.from_mapping(base, environ)):
        assert line.split(":")[0].split("[")[0] in {*environ, "kubernetes"}, line


yaml_text = st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#?%@`\n\t .0123456789abex")))


@FAST
@given(st.one_of(yaml_text, st.text(), st.binary()))
def test_any_text_as_a_settings_file_loads_or_is_refused_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, text: str | bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    lines = outcome(lambda: settings.load(str(path), {}))
    assert lines, "no generated text is a complete settings file"
    named = (repr(str(path)), "containers", "server", "kubernetes", "settings")
    assert all(any(n in line for n in named) or ": " in line for line in lines), lines


@FAST
@given(st.integers(1, 80), st.sampled_from(["[", "{a: "]))
def test_yaml_nested_to_any_depth_is_read_or_refused_at_the_same_limit(
    tmp_path_factory: pytest.TempPathFactory, depth: int, opening: str
) -> None:
    closing = "]" if opening == "[" else "}"
    path = tmp_path_factory.mktemp("deep") / "s.yaml"
    path.write_text(
        f"containers: [{{name: app}}]\npod: {{ips: {opening * depth}{closing * depth}}}\n"
    )
    lines = outcome(lambda: settings.load(str(path), {}))
    too_deep = [line for line in lines if "levels of nesting" in line]
    assert bool(too_deep) == (depth > 30), lines
