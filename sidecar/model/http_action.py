"""Templated HTTP actions over the pod's identity: placeholder checks, rendering, read-backs.

One model serves the app's offline call, config cleanup and the generic HTTP registry. A template
is text with placeholders `{pod.name}`, `{pod.namespace}`, `{pod.uid}`, `{pod.ip}` (the first IP),
`{pod.ips}` (all, comma-separated) and `{pod.labels[KEY]}`; a brace not followed by such a name
(a JSON object's own braces) is plain text. Values are percent-encoded in URLs and form bodies and
JSON-escaped in JSON bodies (placeholders go inside JSON strings), so no value can change the
request's shape. An unknown placeholder is a settings error; so is an empty value once rendered,
since an empty name in `/apps/{pod.name}` would address the whole collection.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, quote_plus, urlsplit

from sidecar.errors import ConfigError
from sidecar.model.registry import Presence
from sidecar.settings.registries import KNOWN_PLACEHOLDERS, PLACEHOLDER, unknown_placeholder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sidecar.settings import PodIdentity
    from sidecar.settings.registries import (
        HeaderSettings,
        HttpActionSettings,
        HttpVerifySettings,
    )

Escape = Literal["url", "json", "form", "text"]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTENT_TYPES = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "text": "text/plain; charset=utf-8",
}
_ESCAPES: dict[Escape, Callable[[str], str]] = {
    "url": lambda v: quote(v, safe=""),
    "form": lambda v: quote_plus(v, safe=""),
    "json": lambda v: json.dumps(v)[1:-1],
    "text": lambda v: v,
}


@dataclass(frozen=True)
class Identity:
    """What templates may say about the pod."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    ips: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def identity_of(pod: PodIdentity, labels: Mapping[str, str] | None = None) -> Identity:
    """The template view of the pod the settings describe; `labels` replace the pod's own."""
    known = pod.labels if labels is None else labels
    return Identity(pod.name, pod.namespace, pod.uid, tuple(pod.ips), dict(known))


@dataclass(frozen=True)
class Header:
    """A request header: a literal value, or a secret file's content read at call time."""

    name: str
    value: str = ""
    file: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class Request:
    """A rendered request, ready to send."""

    method: str
    url: str
    body: str = ""
    content_type: str | None = None
    headers: tuple[Header, ...] = ()
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class Verify:
    """A rendered read-back and how to read its answer (see `presence`)."""

    request: Request
    present_statuses: frozenset[int] = frozenset({200})
    absent_statuses: frozenset[int] = frozenset({404})
    present_if_body_contains: str = ""


@dataclass(frozen=True)
class Action:
    """A rendered action: the request, the statuses meaning success, an optional read-back."""

    name: str
    request: Request
    expect_statuses: frozenset[int]
    verify: Verify | None = None


def check_template(template: str, key: str) -> None:
    """Raise ConfigError naming `key` if `template` has a placeholder that is not known."""
    unknown = unknown_placeholder(template)
    if unknown is not None:
        raise ConfigError(
            f"{key}: unknown placeholder {unknown}; known: {', '.join(KNOWN_PLACEHOLDERS)}"
        )


def render(template: str, pod: Identity, escape: Escape, key: str) -> str:
    """`template` with every placeholder replaced by the pod's value, escaped for its place."""
    check_template(template, key)

    def value(match: re.Match[str]) -> str:
        name, label = match.group(1), match.group(2)
        if name == "pod.labels":
            if label not in pod.labels:
                known = ", ".join(sorted(pod.labels)) or "none"
                raise ConfigError(f"{key}: the pod has no label {label!r} (labels: {known})")
            text = pod.labels[label]
        elif name == "pod.ip":
            text = pod.ips[0] if pod.ips else ""
        elif name == "pod.ips":
            text = ",".join(pod.ips)
        else:
            text = getattr(pod, name.removeprefix("pod."))
        if not text:
            raise ConfigError(f"{key}: {match.group(0)} is empty for this pod")
        return _ESCAPES[escape](text)

    return PLACEHOLDER.sub(value, template)


def check_action(settings: HttpActionSettings, key: str) -> None:
    """Every template, header and status of an action, checked before the pod is known."""
    render_action(settings, _PROBE, key)


def check_verify(settings: HttpVerifySettings, key: str) -> None:
    """Every template, header and status of a read-back, checked before the pod is known."""
    render_verify(settings, _PROBE, key)


def render_optional(settings: HttpActionSettings, pod: Identity, key: str) -> Action | None:
    """The action of `settings` for this pod; None when its url is empty (not configured)."""
    return render_action(settings, pod, key) if settings.url else None


def render_action(settings: HttpActionSettings, pod: Identity, key: str) -> Action:
    """The action of `settings` for this pod (raises ConfigError naming the key)."""
    _check_statuses(settings.expect_statuses, f"{key}.expect_statuses")
    return Action(
        name=settings.name or f"{settings.method} {settings.url}",
        request=render_request(settings, pod, key),
        expect_statuses=frozenset(settings.expect_statuses),
        verify=render_verify(settings.verify, pod, f"{key}.verify")
        if settings.verify.url
        else None,
    )


def render_verify(settings: HttpVerifySettings, pod: Identity, key: str) -> Verify:
    """The read-back of `settings` for this pod."""
    _check_statuses(settings.present_statuses, f"{key}.present_statuses")
    _check_statuses(settings.absent_statuses, f"{key}.absent_statuses")
    both = set(settings.present_statuses) & set(settings.absent_statuses)
    if both:
        raise ConfigError(f"{key}: statuses {sorted(both)} cannot mean both present and absent")
    return Verify(
        request=render_request(settings, pod, key),
        present_statuses=frozenset(settings.present_statuses),
        absent_statuses=frozenset(settings.absent_statuses),
        present_if_body_contains=render(
            settings.present_if_body_contains, pod, "text", f"{key}.present_if_body_contains"
        ),
    )


def render_request(
    settings: HttpActionSettings | HttpVerifySettings, pod: Identity, key: str
) -> Request:
    """The request part of an action or a read-back, rendered."""
    if not settings.url:
        raise ConfigError(f"{key}.url: required, but not set")
    url = render(settings.url, pod, "url", f"{key}.url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}.url: expected an http:// or https:// URL, got {settings.url!r}")
    body_format: Escape = getattr(settings, "body_format", "text")
    body = render(getattr(settings, "body", ""), pod, body_format, f"{key}.body")
    if body and body_format == "json":
        try:
            json.loads(body)
        except ValueError as e:
            raise ConfigError(
                f"{key}.body: not valid JSON once rendered ({e}); placeholders go inside strings"
            ) from e
    if settings.timeout_seconds <= 0:
        raise ConfigError(
            f"{key}.timeout_seconds: expected more than 0, got {settings.timeout_seconds}"
        )
    return Request(
        method=settings.method,
        url=url,
        body=body,
        content_type=_CONTENT_TYPES[body_format] if body else None,
        headers=tuple(_header(h, f"{key}.headers[{i}]") for i, h in enumerate(settings.headers)),
        timeout_seconds=settings.timeout_seconds,
    )


def presence(verify: Verify, status: int, body: str) -> Presence:
    """What a read-back's answer says; a status in neither list proves nothing (unknown)."""
    if status in verify.absent_statuses:
        return Presence.ABSENT
    if status in verify.present_statuses:
        wanted = verify.present_if_body_contains
        return Presence.PRESENT if not wanted or wanted in body else Presence.ABSENT
    return Presence.UNKNOWN


def _header(settings: HeaderSettings, key: str) -> Header:
    if not _HEADER_NAME.match(settings.name):
        raise ConfigError(f"{key}.name: expected an HTTP header name, got {settings.name!r}")
    if bool(settings.value) == bool(settings.file):
        raise ConfigError(f"{key}: expected exactly one of value and file")
    for part in ("value", "prefix"):
        if any(c in getattr(settings, part) for c in "\r\n\0"):
            raise ConfigError(f"{key}.{part}: must not contain line breaks")
    return Header(settings.name, settings.value, settings.file, settings.prefix)


def _check_statuses(statuses: tuple[int, ...], key: str) -> None:
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError(f"{key}: expected HTTP statuses from 100 to 599, got {status!r}")


class _AnyLabels(dict[str, str]):
    """Every label exists (with a value that needs escaping): for checks without a pod."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return 'probe "label" & value'


#: A pod whose values need escaping: checks templates before the real pod is known.
_PROBE = Identity(
    name='probe "name" &/?',
    namespace="probe-namespace",
    uid="probe-uid",
    ips=("10.0.0.1", "fd00::1"),
    labels=_AnyLabels(),
)
