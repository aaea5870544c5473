"""The Eureka registry's settings: peers, app, instance id, and Basic auth from a file."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import URL, Rule
from sidecar.settings.registries import TEMPLATE, Template, Timeout

_USERINFO = re.compile(r"^https?://[^/?#]*@")

NO_USERINFO = Rule(
    "a URL without user:password@ (set username and password_file instead)",
    lambda v: not _USERINFO.match(v),
    # The userinfo may hold a password: show only where it ends, never the value.
    shown=lambda v: f"a URL with userinfo ({len(v)} characters)",
)
SOME = Rule("at least one", lambda v: len(v) >= 1, shown=lambda _: "none")
NOT_EMPTY = Rule("a non-empty value", lambda v: bool(v.strip()))
ONE_LINE = Rule("no line breaks or spaces", lambda v: not any(c in v for c in " \t\r\n\0"))
PeerUrl = Annotated[str, NO_USERINFO, URL]


@dataclass(frozen=True)
class EurekaRegistrySettings:
    """Eureka over its REST API, on every peer: mark OUT_OF_SERVICE, delete, read back.

    Eureka has no admin API apart from the clients' own: the force-removal deletes again on every
    peer (docs/registries/eureka.md).
    """

    #: How the report names this registry.
    name: str
    #: Every Eureka server, as the clients' serviceUrl: http://eureka-0:8761/eureka
    peers: Annotated[tuple[PeerUrl, ...], SOME]
    #: The application name (a template); Eureka upper-cases it, and so do we.
    app: Annotated[str, TEMPLATE, NOT_EMPTY, ONE_LINE]
    kind: Literal["eureka"] = "eureka"
    #: The instance id the app registers with (a template); Netflix's client uses the host name.
    instance_id: Annotated[Template, NOT_EMPTY, ONE_LINE] = "{pod.name}"
    #: Basic auth user; its password is read from `password_file` at each call.
    username: Annotated[str, ONE_LINE] = ""
    #: A file (a mounted Secret) holding the Basic auth password.
    password_file: str = ""
    #: Announce's status override, which the app's heartbeats cannot undo.
    mark_down: bool = True
    #: Retire's force-removal: delete again on every peer when the read-back still sees it.
    force: bool = True
    #: Per request, and never past the phase's deadline.
    timeout_seconds: Timeout = 2.0
