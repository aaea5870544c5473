"""Settings of the ZooKeeper registry: Dubbo providers under `/dubbo/{interface}/providers`."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import PORT, Rule, at_least, clip
from sidecar.settings.registries import TEMPLATE, Timeout

#: host:port, comma-separated: what ZooKeeper clients take (an IPv6 host in brackets).
_HOSTS = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?(,(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?)*$"
)
#: An absolute ZooKeeper path: no empty, `.` or `..` segment, no trailing slash.
_PATH = re.compile(r"^(/[^/\s]+)+$")


def _absolute(value: str) -> bool:
    return bool(_PATH.match(value)) and not any(s in {".", ".."} for s in value.split("/"))


HOSTS = Rule(
    "host:port[,host:port...] without spaces (e.g. zk-0.zk:2181,zk-1.zk:2181)",
    lambda v: bool(_HOSTS.match(v)),
)
ZNODE_PATH = Rule("an absolute ZooKeeper path like /dubbo, without a trailing slash", _absolute)
OPTIONAL_PATH = Rule(
    "empty, or an absolute ZooKeeper path like /prod, without a trailing slash",
    lambda v: not v or _absolute(v),
)
INTERFACE = Rule(
    "a Dubbo interface name without '/' or spaces (e.g. com.example.DemoService)",
    lambda v: bool(v) and not any(c in v for c in "/ \t\r\n"),
    shown=lambda v: clip(repr(v)),
)
SOME_PORTS = Rule("at least one port", lambda v: len(v) >= 1)


@dataclass(frozen=True)
class ZookeeperRegistrySettings:
    """Dubbo's ZooKeeper registry: our provider nodes, matched by host and port, and an override.

    docs/registries/zookeeper.md says what each step does against the server.
    """

    name: str
    #: The ensemble, as ZooKeeper clients take it: `zk-0.zk:2181,zk-1.zk:2181`.
    hosts: Annotated[str, HOSTS]
    kind: Literal["zookeeper"] = "zookeeper"
    #: A chroot every path is under (kazoo's `hosts/chroot`); empty: none.
    chroot: Annotated[str, OPTIONAL_PATH] = ""
    #: Dubbo's root: the registry's `group`, `/dubbo` by default.
    root: Annotated[str, ZNODE_PATH] = "/dubbo"
    #: The interfaces our app provides; empty: every service under `root` is scanned.
    interfaces: tuple[Annotated[str, INTERFACE], ...] = ()
    #: The host the app registers (a template; comma-separated for several, e.g. `{pod.ips}`).
    host: Annotated[str, TEMPLATE] = "{pod.ip}"
    #: The ports the app's providers listen on; a provider URL matches on host and port.
    ports: Annotated[tuple[Annotated[int, PORT], ...], SOME_PORTS] = (20880,)
    #: Announce: `override` writes Dubbo's `disabled=true` configurator; `none`: no mark-down.
    mark_down: Literal["override", "none"] = "override"
    #: Retire: delete a provider node still there after the read-back, and say who put it back.
    force_remove: bool = True
    #: A file (a mounted Secret) holding `user:password` for ZooKeeper's digest scheme.
    auth_file: str = ""
    #: Each request (and the connection) within this, and never past the phase's deadline.
    timeout_seconds: Timeout = 2.0
    #: The session the agent asks for; its ephemeral override goes when the session ends.
    session_timeout_seconds: Annotated[float, at_least(4.0)] = 10.0
