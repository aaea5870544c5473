"""Settings of registries and HTTP actions: frozen dataclasses, defaults and choices on the fields.

Temporary home until the settings package exists; it then moves to sidecar/settings/registries.py.
The placeholder grammar of templates lives here too, so settings can check it at load time.
"""

# No `from __future__ import annotations` here: the settings reader evaluates these annotations.

import re
from dataclasses import dataclass
from typing import Literal

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


def unknown_placeholder(template: str) -> str | None:
    """The first placeholder of `template` that is not known, or None."""
    for match in PLACEHOLDER.finditer(template):
        name, label = match.group(1), match.group(2)
        if (name == "pod.labels" and label) or (label is None and name in _SIMPLE):
            continue
        return match.group(0)
    return None


@dataclass(frozen=True)
class HeaderSettings:
    """One request header: a literal `value`, or a secret `file`'s content read at call time."""

    name: str
    value: str = ""
    #: A file (e.g. a mounted Secret) whose content, stripped, is the header value.
    file: str = ""
    #: Put before the file's content, e.g. "Bearer ".
    prefix: str = ""


@dataclass(frozen=True)
class HttpVerifySettings:
    """A read-back request and how to tell from its answer whether the entry is still there."""

    #: A template; empty means no read-back.
    url: str = ""
    method: Method = "GET"
    headers: tuple[HeaderSettings, ...] = ()
    #: These statuses mean the entry is there (subject to `present_if_body_contains`).
    present_statuses: tuple[int, ...] = (200,)
    #: These statuses mean the entry is gone; any other status proves nothing (unknown).
    absent_statuses: tuple[int, ...] = (404,)
    #: A template; when set, a present status whose body lacks it means absent.
    present_if_body_contains: str = ""
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class HttpActionSettings:
    """One templated HTTP request over the pod's identity (offline call, cleanup, registry step)."""

    #: A template; empty means no such action (where the action is optional).
    url: str = ""
    #: How the report names it; defaults to the method and URL template.
    name: str = ""
    method: Method = "POST"
    #: A template, escaped as `body_format` says.
    body: str = ""
    body_format: BodyFormat = "json"
    headers: tuple[HeaderSettings, ...] = ()
    #: Statuses that mean the action succeeded.
    expect_statuses: tuple[int, ...] = (200, 201, 202, 204)
    timeout_seconds: float = 2.0
    #: For a standalone action (cleanup): done only once this read-back says the entry is gone.
    verify: HttpVerifySettings = HttpVerifySettings()


@dataclass(frozen=True)
class HttpRegistrySettings:
    """The generic HTTP registry: each step of announce and retire is one templated request."""

    name: str
    #: Retire's removal (required).
    deregister: HttpActionSettings
    #: Retire's read-back (required).
    verify: HttpVerifySettings
    kind: Literal["http"] = "http"
    #: Announce: a mark-down the app's heartbeats cannot undo; no url means none.
    mark_down: HttpActionSettings = HttpActionSettings()
    #: Retire: the admin API's removal when the entry is still there; no url means none.
    force_remove: HttpActionSettings = HttpActionSettings()
    #: Deregister statuses meaning "no such entry" (already absent).
    gone_statuses: tuple[int, ...] = (404,)
