"""Settings of the Nacos back end (docs/registries/nacos.md): one instance, by ip and port."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import PORT, URL, Rule
from sidecar.settings.registries import TEMPLATE, Template, Timeout

NON_EMPTY = Rule("a non-empty value", bool)
ONE_LINE = Rule("no line breaks", lambda v: not any(c in v for c in "\r\n\0"))
#: `v1`: /v1/ns/instance (Nacos 1.x-2.x); `v2`: /v2/ns/instance (Nacos 2.2+); `v3`: the client and
#: admin APIs of Nacos 3.x (/v3/client/ns/instance, /v3/admin/ns/instance).
ApiVersion = Literal["v1", "v2", "v3"]
#: `enabled`: the update sends enabled=false; `weight`: it sends weight=0; `none`: no mark-down.
MarkDown = Literal["enabled", "weight", "none"]


@dataclass(frozen=True)
class NacosRegistrySettings:
    """One Nacos instance (service, group, namespace, cluster, ip, port) and how to reach Nacos."""

    #: How the report names this registry.
    name: Annotated[str, NON_EMPTY]
    #: The server with its context path, e.g. http://nacos:8848/nacos.
    server_url: Annotated[str, URL]
    #: The service the app registers, as its Nacos client names it (without the group).
    service_name: Annotated[str, NON_EMPTY, ONE_LINE, TEMPLATE]
    #: The instance's port, as the app registers it.
    port: Annotated[int, PORT]
    kind: Literal["nacos"] = "nacos"
    api_version: ApiVersion = "v2"
    group_name: Annotated[str, NON_EMPTY, ONE_LINE, TEMPLATE] = "DEFAULT_GROUP"
    #: Empty: the public namespace (the parameter is left out; the server takes `public`).
    namespace_id: Annotated[Template, ONE_LINE] = ""
    cluster_name: Annotated[str, NON_EMPTY, ONE_LINE, TEMPLATE] = "DEFAULT"
    #: The instance's IP, as the app registers it.
    ip: Annotated[str, NON_EMPTY, ONE_LINE, TEMPLATE] = "{pod.ip}"
    #: Ephemeral (client heartbeats or gRPC) or persistent; must match the registration.
    ephemeral: bool = True
    mark_down: MarkDown = "enabled"
    #: Files (mounted Secret keys) with the user name and password of Nacos's auth; both or none.
    username_file: str = ""
    password_file: str = ""
    #: Per request, and never past the phase's deadline.
    timeout_seconds: Timeout = 2.0
