"""Pins templated HTTP actions: placeholders render escaped for their place (no value can change a
URL's or a JSON body's shape), unknown placeholders and bad settings fail naming key and
placeholder, and a read-back's answer means present, absent or unknown as documented."""

from __future__ import annotations

import json
from urllib.parse import unquote, unquote_plus, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.model.http_action import (
    Identity,
    Verify,
    check_action,
    presence,
    render,
    render_action,
    render_optional,
    render_verify,
)
from sidecar.model.registry import Presence
from sidecar.settings.registries import (
    HeaderSettings,
    HttpActionSettings,
    HttpVerifySettings,
)

POD = Identity(
    name="web-7d9f",
    namespace="shop",
    uid="0b5c-11",
    ips=("10.1.2.3", "fd00::3"),
    labels={"app": "web", "app.kubernetes.io/name": 'we"b/1'},
)


@pytest.mark.parametrize(
    ("template", "escape", "rendered"),
    [
        ("http://r/apps/{pod.name}", "url", "http://r/apps/web-7d9f"),
        ("http://r/{pod.namespace}/{pod.uid}", "url", "http://r/shop/0b5c-11"),
        ("http://r/i?ip={pod.ip}", "url", "http://r/i?ip=10.1.2.3"),
        ("http://r/i?ips={pod.ips}", "url", "http://r/i?ips=10.1.2.3%2Cfd00%3A%3A3"),
        ("http://r/{pod.labels[app.kubernetes.io/name]}", "url", "http://r/we%22b%2F1"),
        (
            '{"app": "{pod.labels[app]}", "ip": "{pod.ip}"}',
            "json",
            '{"app": "web", "ip": "10.1.2.3"}',
        ),
        ('{"n": "{pod.labels[app.kubernetes.io/name]}"}', "json", '{"n": "we\\"b/1"}'),
        ("ip={pod.ip}&n={pod.labels[app.kubernetes.io/name]}", "form", "ip=10.1.2.3&n=we%22b%2F1"),
        ("{pod.name} in {pod.namespace}", "text", "web-7d9f in shop"),
        # Braces that open no placeholder are plain text: a JSON object's own, an empty pair.
        ('{"a": {}, "b": {"c": 1}}', "json", '{"a": {}, "b": {"c": 1}}'),
    ],
)
def test_placeholders_render_escaped_for_their_place(
    template: str, escape: str, rendered: str
) -> None:
    assert render(template, POD, escape, "k") == rendered  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "placeholder"),
    [
        ("http://r/{pod.nmae}", "{pod.nmae}"),
        ("http://r/{name}", "{name}"),
        ("http://r/{pod.labels}", "{pod.labels}"),
        ("http://r/{pod.labels[]}", "{pod.labels[]}"),
        ("http://r/{pod.name[x]}", "{pod.name[x]}"),
        ("http://r/{pod.ip}/{pod.host_ip}", "{pod.host_ip}"),
    ],
)
def test_an_unknown_placeholder_is_rejected_naming_key_placeholder_and_the_known_ones(
    template: str, placeholder: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_action(HttpActionSettings(url=template), "registries[2].deregister")
    message = str(caught.value)
    assert message.startswith("registries[2].deregister.url: unknown placeholder ")
    assert placeholder in message
    assert "{pod.name}, {pod.namespace}, {pod.uid}, {pod.ip}, {pod.ips}" in message


def test_placeholders_are_checked_in_bodies_and_read_back_conditions_too() -> None:
    with pytest.raises(ConfigError, match=r"^offline\.body: unknown placeholder \{pod\.id\}"):
        check_action(HttpActionSettings(url="http://a/", body='{"id": "{pod.id}"}'), "offline")
    verify = HttpVerifySettings(url="http://a/", present_if_body_contains="{pod.addr}")
    with pytest.raises(ConfigError, match=r"^cleanup\.verify\.present_if_body_contains: .*addr"):
        check_action(HttpActionSettings(url="http://a/", verify=verify), "cleanup")


def test_a_label_template_checks_before_the_pod_is_known_and_fails_on_a_pod_without_it() -> None:
    settings = HttpActionSettings(url="http://r/{pod.labels[team]}")
    check_action(settings, "offline")
    with pytest.raises(
        ConfigError, match=r"offline\.url: the pod has no label 'team' \(labels: app"
    ):
        render_action(settings, POD, "offline")


def test_an_empty_value_is_rejected_rather_than_addressing_the_whole_collection() -> None:
    with pytest.raises(ConfigError, match=r"^r\.url: \{pod\.ip\} is empty for this pod$"):
        render_action(HttpActionSettings(url="http://r/apps/{pod.ip}"), Identity(name="a"), "r")


def test_a_json_body_must_stay_json_once_rendered() -> None:
    settings = HttpActionSettings(url="http://r/", body='{"ip": {pod.ip}}')
    with pytest.raises(
        ConfigError, match=r"^c\.body: not valid JSON once rendered .*inside strings"
    ):
        check_action(settings, "c")


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (HttpActionSettings(), r"^a\.url: required, but not set$"),
        (HttpActionSettings(url="ftp://x/{pod.name}"), r"^a\.url: expected an http:// or https://"),
        (HttpActionSettings(url="/relative"), r"^a\.url: expected an http://"),
        (
            HttpActionSettings(url="http://x/", expect_statuses=(200, 999)),
            r"a\.expect_statuses: .*999",
        ),
        (
            HttpActionSettings(url="http://x/", timeout_seconds=0),
            r"a\.timeout_seconds: expected more",
        ),
        (
            HttpActionSettings(url="http://x/", headers=(HeaderSettings("X-T", "v", "/f"),)),
            r"^a\.headers\[0\]: expected exactly one of value and file$",
        ),
        (
            HttpActionSettings(url="http://x/", headers=(HeaderSettings("X-T"),)),
            r"^a\.headers\[0\]: expected exactly one of value and file$",
        ),
        (
            HttpActionSettings(url="http://x/", headers=(HeaderSettings("X T", "v"),)),
            r"^a\.headers\[0\]\.name: expected an HTTP header name",
        ),
        (
            HttpActionSettings(url="http://x/", headers=(HeaderSettings("X-T", "v\r\nX-Evil: 1"),)),
            r"^a\.headers\[0\]\.value: must not contain line breaks$",
        ),
        (
            HttpActionSettings(
                url="http://x/",
                verify=HttpVerifySettings(url="http://x/", present_statuses=(200, 404)),
            ),
            r"^a\.verify: statuses \[404\] cannot mean both present and absent$",
        ),
    ],
)
def test_bad_action_settings_are_rejected_naming_the_key(
    settings: HttpActionSettings, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        check_action(settings, "a")


def test_a_rendered_action_carries_its_request_statuses_and_read_back() -> None:
    settings = HttpActionSettings(
        url="http://cfg/{pod.namespace}/{pod.name}",
        method="DELETE",
        body="ip={pod.ip}",
        body_format="form",
        headers=(HeaderSettings("X-Token", file="/secret", prefix="Bearer "),),
        expect_statuses=(200, 204),
        verify=HttpVerifySettings(url="http://cfg/{pod.namespace}/{pod.name}"),
    )
    action = render_action(settings, POD, "cleanup[0]")
    assert action.name == "DELETE http://cfg/{pod.namespace}/{pod.name}"
    assert action.request.url == "http://cfg/shop/web-7d9f"
    assert action.request.body == "ip=10.1.2.3"
    assert action.request.content_type == "application/x-www-form-urlencoded"
    assert action.request.headers[0].file == "/secret"
    assert action.expect_statuses == {200, 204}
    assert action.verify is not None
    assert action.verify.request.method == "GET"
    assert action.verify.request.url == "http://cfg/shop/web-7d9f"


def test_an_action_without_a_url_is_not_configured() -> None:
    assert render_optional(HttpActionSettings(), POD, "mark_down") is None
    assert render_optional(HttpActionSettings(url="http://a/"), POD, "mark_down") is not None


def _verify(contains: str = "") -> Verify:
    settings = HttpVerifySettings(
        url="http://r/",
        present_statuses=(200,),
        absent_statuses=(404, 410),
        present_if_body_contains=contains,
    )
    return render_verify(settings, POD, "v")


@pytest.mark.parametrize(
    ("contains", "status", "body", "seen"),
    [
        ("", 200, "", Presence.PRESENT),
        ("", 404, "", Presence.ABSENT),
        ("", 410, "", Presence.ABSENT),
        # Refused, filtered, failed or unexpected: proves nothing, never absence.
        ("", 403, "", Presence.UNKNOWN),
        ("", 500, "", Presence.UNKNOWN),
        ("", 204, "", Presence.UNKNOWN),
        ('"{pod.ip}"', 200, '[{"ip": "10.1.2.3"}]', Presence.PRESENT),
        ('"{pod.ip}"', 200, '[{"ip": "10.1.2.30"}]', Presence.ABSENT),
        ('"{pod.ip}"', 200, "[]", Presence.ABSENT),
        ('"{pod.ip}"', 503, "10.1.2.3", Presence.UNKNOWN),
    ],
)
def test_a_read_back_answer_means_present_absent_or_unknown(
    contains: str, status: int, body: str, seen: Presence
) -> None:
    assert presence(_verify(contains), status, body) is seen


@given(st.text(min_size=1))
def test_no_value_changes_the_shape_of_a_url(value: str) -> None:
    pod = Identity(name=value, namespace="ns", ips=("10.0.0.1",))
    url = render("http://reg:8080/apps/{pod.name}/x?ns={pod.namespace}", pod, "url", "k")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == (
        "http",
        "reg:8080",
        "ns=ns",
        "",
    )
    segments = parts.path.split("/")
    assert segments[:3] == ["", "apps", segments[2]]
    assert segments[3:] == ["x"]
    assert unquote(segments[2]) == value


@given(st.text(min_size=1), st.text(min_size=1))
def test_no_value_changes_the_shape_of_a_json_or_form_body(name: str, label: str) -> None:
    pod = Identity(name=name, ips=("10.0.0.1",), labels={"app": label})
    body = render('{"name": "{pod.name}", "app": ["{pod.labels[app]}"]}', pod, "json", "k")
    assert json.loads(body) == {"name": name, "app": [label]}
    form = render("name={pod.name}&app={pod.labels[app]}", pod, "form", "k")
    pairs = [p.split("=") for p in form.split("&")]
    assert [(k, unquote_plus(v)) for k, v in pairs] == [("name", name), ("app", label)]
