"""Consul registry settings: the local agent's address, the service and how this pod's id reads."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import URL, Rule
from sidecar.settings.registries import ONE_LINE, TEMPLATE, Timeout

NOT_EMPTY = Rule("a non-empty string", lambda v: bool(v.strip()))


@dataclass(frozen=True)
class ConsulRegistrySettings:
    """A service instance registered with a Consul agent (agent API, catalog force-removal)."""

    #: How the report names this registry.
    name: str
    #: The service's name, as registered (catalog reads are by name).
    service: Annotated[str, NOT_EMPTY, ONE_LINE]
    kind: Literal["consul"] = "consul"
    #: The agent the app registered with (usually the node's: `http://$(HOST_IP):8500`).
    address: Annotated[str, URL] = "http://127.0.0.1:8500"
    #: This pod's service ID: a template over the pod identity, e.g. `web-{pod.name}`.
    service_id: Annotated[str, TEMPLATE, NOT_EMPTY, ONE_LINE] = "{pod.name}"
    #: A file holding the ACL token (a mounted Secret), read at each call; empty: no token.
    token_file: str = ""
    #: Enterprise only: Community Edition answers 400 to any request that names one.
    namespace: Annotated[str, ONE_LINE] = ""
    #: Enterprise only, as `namespace`.
    partition: Annotated[str, ONE_LINE] = ""
    #: The node the service is registered on; empty: the agent's own (`/v1/agent/self`).
    node_name: Annotated[str, ONE_LINE] = ""
    #: Shown in Consul as the maintenance check's notes.
    maintenance_reason: Annotated[str, ONE_LINE] = "pod terminating (shutdown-coordinator)"
    #: Whether retire may remove a lingering entry through `PUT /v1/catalog/deregister`.
    force_remove: bool = True
    #: Per request, and never past the phase's deadline.
    timeout_seconds: Timeout = 2.0
