"""The generic reader: a new settings group, even a union picked by `kind`, is one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest

from sidecar.settings import Settings
from sidecar.settings.constraints import URL, FromEnv, at_least
from sidecar.settings.reader import Reader


@dataclass(frozen=True)
class ConsulRegistry:
    """A test-only registry kind."""

    kind: Literal["consul"]
    address: Annotated[str, URL]
    service: str = "web"
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    token: Annotated[str | None, FromEnv("TEST_CONSUL_TOKEN")] = None


@dataclass(frozen=True)
class HttpRegistry:
    """Another test-only registry kind."""

    kind: Literal["http"]
    url: Annotated[str, URL]
    timeout_seconds: Annotated[float, at_least(0.1)] = 1.0


@dataclass(frozen=True)
class SettingsWithRegistries(Settings):
    """The settings tree plus one new group: nothing else is written for it."""

    test_registries: tuple[ConsulRegistry | HttpRegistry, ...] = ()


BASE = {"containers": [{"name": "app"}], "server": {"allow_unauthenticated": True}}


def read(data: object, environ: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    reader = Reader(environ or {})
    result = reader.read(SettingsWithRegistries, data, "")
    return result, list(reader.errors.values())


def test_a_new_group_is_read_by_kind_with_its_defaults_and_environment() -> None:
    data = {
        **BASE,
        "test_registries": [
            {"kind": "consul", "address": "http://consul:8500/", "meta": {"zone": "a"}},
            {"kind": "http", "url": "https://registry.example", "timeout_seconds": 2},
        ],
    }
    result, errors = read(data, {"TEST_CONSUL_TOKEN": "t"})
    assert errors == []
    assert result.test_registries == (
        ConsulRegistry("consul", "http://consul:8500", meta={"zone": "a"}, token="t"),
        HttpRegistry("http", "https://registry.example", 2.0),
    )
    assert result.containers[0].name == "app"


def test_the_kind_is_required_and_an_unknown_kind_names_the_key_value_and_known_kinds() -> None:
    data = {**BASE, "test_registries": [{"kind": "zookeeper"}, {"address": "http://c"}, "consul"]}
    _, errors = read(data)
    assert errors == [
        "test_registries[0].kind: expected one of consul, http, got 'zookeeper'",
        "test_registries[1].kind: required, one of consul, http",
        "test_registries[2]: expected a mapping, got 'consul'",
    ]


def test_each_kind_checks_its_own_fields_and_refuses_the_others() -> None:
    data = {
        **BASE,
        "test_registries": [
            {"kind": "http", "url": "ftp://x", "timeout_seconds": 0, "service": "web"},
            {"kind": "consul", "meta": {"zone": 1}},
        ],
    }
    _, errors = read(data)
    assert sorted(errors) == sorted(
        [
            "test_registries[0].service: unknown key (known here: kind, url, timeout_seconds)",
            "test_registries[0].url: expected an http:// or https:// URL, got 'ftp://x'",
            "test_registries[0].timeout_seconds: expected at least 0.1, got 0",
            "test_registries[1].address: required, but not set",
            "test_registries[1].meta: expected a mapping of strings to strings, got {'zone': 1}",
        ]
    )


def test_an_absent_group_takes_its_defaults() -> None:
    result, errors = read(BASE)
    assert errors == []
    assert result.registries == ()


def test_a_type_the_reader_does_not_know_is_a_bug_in_the_schema_not_a_config_error() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: complex = 0j

    with pytest.raises(TypeError, match="not one the reader knows"):
        Reader({}).read(Odd, {"when": "now"}, "odd")
