"""The Consul registry: maintenance mode, agent deregistration, catalog read-back and force-removal.

Facts relied on (docs/registries/consul.md lists their sources): maintenance mode adds a critical
check to the service that its own TTL passes cannot clear; the agent answers 404 for a service ID
it does not hold; a catalog deregistration of a service the agent still holds is undone by the
agent's anti-entropy; a list read filtered by ACLs says so in `X-Consul-Results-Filtered-By-ACLs`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from sidecar.adapters.session import LazySession
from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.http_action import render
from sidecar.model.registry import Answer, Presence

if TYPE_CHECKING:
    from sidecar.model.http_action import Identity
    from sidecar.settings.registry_consul import ConsulRegistrySettings

TOKEN_HEADER = "X-Consul-Token"  # noqa: S105 - a header name, not a secret
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
#: A catalog read larger than this proves nothing (the filter should keep it to one entry).
BODY_LIMIT_BYTES = 1024 * 1024
#: What Community Edition says to a namespace or a partition, and the setting that sent it.
_ENTERPRISE_ONLY = {
    "Namespaces are a Consul Enterprise feature": "namespace",
    "Partitions are a Consul Enterprise feature": "partition",
}


class ConsulRegistry:
    """One service instance on a Consul agent; every request bounded by the deadline."""

    def __init__(self, settings: ConsulRegistrySettings, pod: Identity, *, key: str) -> None:
        self._settings = settings
        self._key = key
        self._name = settings.name
        if not settings.service.strip():
            raise ConfigError(f"{key}.service: required, the service's name in Consul")
        self._service_id = render(settings.service_id, pod, "text", f"{key}.service_id")
        if any(c in self._service_id for c in "\r\n\0/"):
            raise ConfigError(
                f"{key}.service_id: a service ID cannot hold '/' or line breaks, "
                f"got {self._service_id!r}"
            )
        self._base = settings.address.rstrip("/")
        self._scope: dict[str, str] = {}
        if settings.namespace:
            self._scope["ns"] = settings.namespace
        if settings.partition:
            self._scope["partition"] = settings.partition
        self._node: str | None = settings.node_name or None
        self._http = LazySession()

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._name

    @property
    def service_id(self) -> str:
        """This pod's service ID, rendered."""
        return self._service_id

    @property
    def can_mark_down(self) -> bool:
        """Maintenance mode always exists."""
        return True

    @property
    def can_force(self) -> bool:
        """Whether `force_remove` (the catalog's deregistration) is enabled."""
        return self._settings.force_remove

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        await self._http.close()

    async def mark_down(self, deadline: float) -> None:
        """Put the service in maintenance mode: a critical check its TTL passes cannot clear."""
        path = f"/v1/agent/service/maintenance/{self._quoted}"
        query = {"enable": "true", "reason": self._settings.maintenance_reason}
        status, _, body = await self._send("mark_down", "PUT", path, deadline, query)
        if status != 200:
            raise self._failed("mark_down", "PUT", path, status, body)

    async def deregister(self, deadline: float) -> Answer:
        """Remove the service from the agent (which removes it from the catalog): OK, or GONE."""
        path = f"/v1/agent/service/deregister/{self._quoted}"
        status, _, body = await self._send("deregister", "PUT", path, deadline)
        if status == 200:
            return Answer.OK
        if status == 404:
            return Answer.GONE
        raise self._failed("deregister", "PUT", path, status, body)

    async def is_present(self, deadline: float) -> Presence:
        """Read the catalog for our service ID; a read filtered by ACLs proves no absence."""
        path = f"/v1/catalog/service/{quote(self._settings.service, safe='')}"
        query = {"filter": f"ServiceID == {_bexpr_string(self._service_id)}"}
        status, headers, body = await self._send("read", "GET", path, deadline, query)
        if status != 200:
            raise self._failed("read", "GET", path, status, body)
        try:
            entries = json.loads(body)
            found = any(e.get("ServiceID") == self._service_id for e in entries)
        except (ValueError, TypeError, AttributeError) as e:
            raise AdapterError(
                f"{self._name}: read GET {path}: not a list of catalog entries: {truncate(body)}"
            ) from e
        if found:
            return Presence.PRESENT
        if headers.get(FILTERED_HEADER, "").lower() == "true":
            raise AdapterError(
                f"{self._name}: read GET {path}: {FILTERED_HEADER}: true, so the token may not "
                f"see {self._service_id!r}: its absence is not proven"
            )
        return Presence.ABSENT

    async def force_remove(self, deadline: float) -> None:
        """Remove the entry through the catalog (`PUT /v1/catalog/deregister`) on our node."""
        node = self._node or await self._agent_node(deadline)
        path = "/v1/catalog/deregister"
        payload = {"Node": node, "ServiceID": self._service_id}
        status, _, body = await self._send("force", "PUT", path, deadline, payload=payload)
        if status != 200:
            raise self._failed("force", "PUT", path, status, body)

    @property
    def _quoted(self) -> str:
        return quote(self._service_id, safe="")

    async def _agent_node(self, deadline: float) -> str:
        """The agent's node name (`Config.NodeName` of `/v1/agent/self`), kept once known."""
        path = "/v1/agent/self"
        status, _, body = await self._send("force", "GET", path, deadline, scoped=False)
        if status != 200:
            raise self._failed("force", "GET", path, status, body)
        try:
            node = json.loads(body)["Config"]["NodeName"]
        except (ValueError, TypeError, KeyError) as e:
            raise AdapterError(
                f"{self._name}: force GET {path}: no Config.NodeName: {truncate(body)}"
            ) from e
        if not isinstance(node, str) or not node:
            raise AdapterError(f"{self._name}: force GET {path}: Config.NodeName is {node!r}")
        self._node = node
        return node

    async def _send(
        self,
        step: str,
        method: str,
        path: str,
        deadline: float,
        query: dict[str, str] | None = None,
        *,
        payload: dict[str, Any] | None = None,
        scoped: bool = True,
    ) -> tuple[int, dict[str, str], str]:
        """One request: its status, headers and body; AdapterError when nothing usable came."""
        what = f"{self._name}: {step} {method} {path}"
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AdapterError(f"{what}: no time left before the deadline")
        params = {**(query or {}), **(self._scope if scoped else {})}
        headers = {TOKEN_HEADER: self._token()} if self._settings.token_file else {}
        timeout = min(self._settings.timeout_seconds, left)
        try:
            async with self._http.get().request(
                method,
                self._base + path,
                params=params,
                json=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(BODY_LIMIT_BYTES + 1)
                if len(raw) > BODY_LIMIT_BYTES:
                    raise AdapterError(f"{what}: answer larger than {BODY_LIMIT_BYTES} bytes")
                return response.status, dict(response.headers), raw.decode("utf-8", "replace")
        except TimeoutError as e:
            raise AdapterError(f"{what}: no answer within {timeout:.3g} s") from e
        except aiohttp.ClientError as e:
            raise AdapterError(f"{what}: {type(e).__name__}: {e}") from e

    def _token(self) -> str:
        """The ACL token, read at each call so a rotated Secret is picked up; never logged."""
        path = self._settings.token_file
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise AdapterError(
                f"{self._name}: cannot read {self._key}.token_file {path}: {e}"
            ) from e
        if not token or not all("!" <= c <= "~" for c in token):
            raise AdapterError(
                f"{self._name}: {self._key}.token_file {path} is empty or not one visible line"
            )
        return token

    def _failed(self, step: str, method: str, path: str, status: int, body: str) -> AdapterError:
        text = body.strip()
        hint = next(
            (
                f" ({self._key}.{field} is set: Community Edition has no {field}s)"
                for phrase, field in _ENTERPRISE_ONLY.items()
                if phrase in text and getattr(self._settings, field)
            ),
            "",
        )
        return AdapterError(
            f"{self._name}: {step} {method} {path}: HTTP {status}{hint}: {truncate(text)}"
        )


def _bexpr_string(value: str) -> str:
    """`value` as a double-quoted go-bexpr string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
