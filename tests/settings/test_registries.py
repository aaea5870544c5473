"""Pins the registry and HTTP action settings as the generic reader reads them: defaults, optional
steps as groups without a url, and errors that name the key, the bad placeholder or value and
what was expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.settings import from_mapping
from sidecar.settings.reader import Reader
from sidecar.settings.registries import (
    HeaderSettings,
    HttpActionSettings,
    HttpRegistrySettings,
    HttpVerifySettings,
    RetrySettings,
)

EUREKA = {
    "kind": "http",
    "name": "eureka",
    "mark_down": {
        "method": "PUT",
        "url": "http://eureka:8761/eureka/apps/WEB/{pod.name}/status?value=OUT_OF_SERVICE",
    },
    "deregister": {
        "method": "DELETE",
        "url": "http://eureka:8761/eureka/apps/WEB/{pod.name}",
        "headers": [{"name": "Authorization", "file": "/secrets/eureka", "prefix": "Basic "}],
    },
    "verify": {"url": "http://eureka:8761/eureka/apps/WEB/{pod.name}"},
}


def _read(data: Any) -> tuple[Any, dict[str, str]]:
    reader = Reader({})
    return reader.read(tuple[HttpRegistrySettings, ...], [data], "registries"), reader.errors


def test_a_registry_reads_with_defaults_and_an_absent_step_as_no_url() -> None:
    [registry], errors = _read(EUREKA)
    assert errors == {}
    assert registry == HttpRegistrySettings(
        name="eureka",
        mark_down=HttpActionSettings(
            method="PUT",
            url="http://eureka:8761/eureka/apps/WEB/{pod.name}/status?value=OUT_OF_SERVICE",
        ),
        deregister=HttpActionSettings(
            method="DELETE",
            url="http://eureka:8761/eureka/apps/WEB/{pod.name}",
            headers=(HeaderSettings("Authorization", file="/secrets/eureka", prefix="Basic "),),
        ),
        verify=HttpVerifySettings(url="http://eureka:8761/eureka/apps/WEB/{pod.name}"),
    )
    assert registry.force_remove.url == ""
    assert registry.deregister.expect_statuses == (200, 201, 202, 204)
    assert registry.gone_statuses == (404,)


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            {"deregister": {"url": "http://e/apps/{pod.hostname}"}},
            "registries[0].deregister.url",
            (
                "expected placeholders among {pod.name}, {pod.namespace}, {pod.uid}, {pod.ip}, "
                "{pod.ips}, {pod.labels[KEY]}, got {pod.hostname}"
            ),
        ),
        (
            {"verify": {"url": "http://e/", "present_if_body_contains": "{ip}"}},
            "registries[0].verify.present_if_body_contains",
            "got {ip}",
        ),
        (
            {"deregister": {"method": "DELETE"}},
            "registries[0].deregister",
            "expected a request with a url, got ''",
        ),
        ({"verify": {}}, "registries[0].verify", "expected a request with a url, got ''"),
        (
            {"deregister": {"url": "eureka/apps"}},
            "registries[0].deregister.url",
            "expected an http:// or https:// URL",
        ),
        (
            {"deregister": {"url": "http://e/", "body": '{"ip": {pod.ip}}'}},
            "registries[0].deregister",
            "expected a JSON body with placeholders inside strings",
        ),
        (
            {"deregister": {"url": "http://e/", "headers": [{"name": "X-T"}]}},
            "registries[0].deregister.headers[0]",
            "expected exactly one of value and file, got neither",
        ),
        (
            {"deregister": {"url": "http://e/", "headers": [{"name": "X-T", "value": "a\nb"}]}},
            "registries[0].deregister.headers[0].value",
            "expected no line breaks",
        ),
        (
            {"deregister": {"url": "http://e/", "expect_statuses": [200, 700]}},
            "registries[0].deregister.expect_statuses[1]",
            "expected an HTTP status from 100 to 599, got 700",
        ),
        (
            {"verify": {"url": "http://e/", "present_statuses": [200, 404]}},
            "registries[0].verify",
            "expected present_statuses and absent_statuses without a common status, got [404]",
        ),
        ({"kind": "consul"}, "registries[0].kind", "expected one of http, got 'consul'"),
        (
            {"mark_down": {"url": "http://e/", "method": "FETCH"}},
            "registries[0].mark_down.method",
            "expected one of GET",
        ),
    ],
)
def test_a_bad_registry_is_an_error_naming_the_key_and_what_was_expected(
    change: dict[str, Any], key: str, message: str
) -> None:
    _, errors = _read({**EUREKA, **change})
    assert key in errors, errors
    assert message in errors[key]


def test_retries_read_with_their_defaults() -> None:
    reader = Reader({})
    assert reader.read(RetrySettings, {"attempts": 3}, "registry_retry") == RetrySettings(
        first_seconds=0.1, max_seconds=2.0, attempts=3
    )
    reader.read(RetrySettings, {"attempts": 0}, "registry_retry")
    assert reader.errors == {
        "registry_retry.attempts": "registry_retry.attempts: expected at least 1, got 0"
    }


def test_the_example_in_the_docs_reads_without_errors() -> None:
    text = (Path(__file__).parents[2] / "docs" / "registries.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    example = yaml.safe_load(block.group(1))
    pod = {"containers": [{"name": "app"}], "server": {"allow_unauthenticated": True}}
    loaded = from_mapping({**pod, **example}, {})
    [registry] = loaded.registries
    assert [a.name for a in loaded.offline_calls] == ["app-offline"]
    assert [a.name for a in loaded.config_cleanup] == ["nacos-config"]
    assert isinstance(registry, HttpRegistrySettings)
    assert (registry.name, registry.mark_down.method) == ("eureka", "PUT")
