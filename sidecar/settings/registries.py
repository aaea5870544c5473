"""Registry and HTTP action settings: frozen dataclasses, and the placeholder grammar they use.

Optional single requests are groups whose `url` is empty, not `None`: the reader reads every
group, so an absent `mark_down:` is simply a mark-down with no URL (none configured).
"""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

import json
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import Rule, at_least, clip, show

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH"]
BodyFormat = Literal["json", "form", "text"]

#: Every placeholder a template may use; KEY is any label key.
KNOWN_PLACEHOLDERS = (
    "{pod.name}",
    "{pod.namespace}",
    "{pod.uid}",
    "{pod.ip}",
    "{pod.ips}",
    "{pod.labels[KEY]}",
)
#: A brace, a dotted name, an optional [key], a brace; any other brace is plain text (JSON's own).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:\[([^\[\]{}]*)\])?\}")
_SIMPLE = frozenset(p.strip("{}") for p in KNOWN_PLACEHOLDERS if "[" not in p)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_URL = re.compile(r"^https?://[^/\s]+")


def unknown_placeholder(template: str) -> str | None:
    """The first placeholder of `template` that is not known, or None."""
    for match in PLACEHOLDER.finditer(template):
        name, label = match.group(1), match.group(2)
        if (name == "pod.labels" and label) or (label is None and name in _SIMPLE):
            continue
        return match.group(0)
    return None


def _json_once_rendered(action: "HttpActionSettings") -> bool:
    if action.body_format != "json" or not action.body:
        return True
    try:
        json.loads(PLACEHOLDER.sub("x", action.body))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can parse
        return False
    return True


TEMPLATE = Rule(
    f"placeholders among {', '.join(KNOWN_PLACEHOLDERS)}",
    lambda v: unknown_placeholder(v) is None,
    shown=lambda v: clip(str(unknown_placeholder(v))),
)
URL_TEMPLATE = Rule("an http:// or https:// URL", lambda v: not v or bool(_URL.match(v)))
HEADER_NAME = Rule("an HTTP header name", lambda v: bool(_HEADER_NAME.match(v)))
ONE_LINE = Rule("no line breaks", lambda v: not any(c in v for c in "\r\n\0"))
STATUS = Rule("an HTTP status from 100 to 599", lambda v: 100 <= v <= 599)
ONE_SOURCE = Rule(
    "exactly one of value and file",
    lambda h: bool(h.value) != bool(h.file),
    shown=lambda h: "both" if h.value else "neither",
)
REQUIRED_URL = Rule("a request with a url", lambda a: bool(a.url), shown=lambda a: repr(a.url))
JSON_BODY = Rule(
    "a JSON body with placeholders inside strings",
    _json_once_rendered,
    shown=lambda a: show(a.body),
)
DISJOINT = Rule(
    "present_statuses and absent_statuses without a common status",
    lambda v: not set(v.present_statuses) & set(v.absent_statuses),
    shown=lambda v: clip(str(sorted(set(v.present_statuses) & set(v.absent_statuses)))),
)
Status = Annotated[int, STATUS]
Template = Annotated[str, TEMPLATE]
UrlTemplate = Annotated[str, TEMPLATE, URL_TEMPLATE]
Timeout = Annotated[float, at_least(0.05)]


@dataclass(frozen=True)
class HeaderSettings:
    """One request header: a literal `value`, or a secret `file`'s content read at call time."""

    name: Annotated[str, HEADER_NAME]
    value: Annotated[str, ONE_LINE] = ""
    #: A file (e.g. a mounted Secret) whose content, stripped, is the header value.
    file: str = ""
    #: Put before the file's content, e.g. "Bearer ".
    prefix: Annotated[str, ONE_LINE] = ""


Header = Annotated[HeaderSettings, ONE_SOURCE]


@dataclass(frozen=True)
class HttpVerifySettings:
    """A read-back request and how to tell from its answer whether the entry is still there."""

    #: A template; empty means no read-back.
    url: UrlTemplate = ""
    method: Method = "GET"
    headers: tuple[Header, ...] = ()
    #: These statuses mean the entry is there (subject to `present_if_body_contains`).
    present_statuses: tuple[Status, ...] = (200,)
    #: These statuses mean the entry is gone; any other status proves nothing (unknown).
    absent_statuses: tuple[Status, ...] = (404,)
    #: A template; when set, a present status whose body lacks it means absent.
    present_if_body_contains: Template = ""
    timeout_seconds: Timeout = 2.0


Verify = Annotated[HttpVerifySettings, DISJOINT]


@dataclass(frozen=True)
class HttpActionSettings:
    """One templated HTTP request over the pod's identity (offline call, cleanup, registry step)."""

    #: A template; empty means no such action (where the action is optional).
    url: UrlTemplate = ""
    #: How the report names it; defaults to the method and URL template.
    name: str = ""
    method: Method = "POST"
    #: A template, escaped as `body_format` says.
    body: Template = ""
    body_format: BodyFormat = "json"
    headers: tuple[Header, ...] = ()
    #: Statuses that mean the action succeeded.
    expect_statuses: tuple[Status, ...] = (200, 201, 202, 204)
    timeout_seconds: Timeout = 2.0
    #: For a standalone action (cleanup): done only once this read-back says the entry is gone.
    verify: Verify = HttpVerifySettings()


Action = Annotated[HttpActionSettings, JSON_BODY]


@dataclass(frozen=True)
class HttpRegistrySettings:
    """The generic HTTP registry: each step of announce and retire is one templated request."""

    name: str
    #: Retire's removal.
    deregister: Annotated[HttpActionSettings, REQUIRED_URL, JSON_BODY]
    #: Retire's read-back.
    verify: Annotated[HttpVerifySettings, REQUIRED_URL, DISJOINT]
    kind: Literal["http"] = "http"
    #: Announce: a mark-down the app's heartbeats cannot undo; no url means none.
    mark_down: Action = HttpActionSettings()
    #: Retire: the admin API's removal when the entry is still there; no url means none.
    force_remove: Action = HttpActionSettings()
    #: Deregister statuses meaning "no such entry" (already absent).
    gone_statuses: tuple[Status, ...] = (404,)


@dataclass(frozen=True)
class RetrySettings:
    """Bounded retries of every registry call: the delay starts at `first_seconds` and doubles."""

    first_seconds: Annotated[float, at_least(0.01)] = 0.1
    max_seconds: Annotated[float, at_least(0.01)] = 2.0
    attempts: Annotated[int, Rule("at least 1", lambda v: v >= 1)] = 5
