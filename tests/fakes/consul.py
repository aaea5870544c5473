"""A Consul agent and its catalog, the part the Consul registry and the official client use.

Each behaviour follows Consul's source (github.com/hashicorp/consul) or its docs:

- CS1 `PUT /v1/agent/service/register`: keys are matched case-insensitively (agent/http.go
  decodeBody, lib.TranslateKeys); `Name` is required (400 "Missing service name"); `ID` defaults
  to the name; each check of `Check`/`Checks` gets the ID `service:<id>`, or `service:<id>:<n>`
  when there are several, starts `critical` unless it gives a `Status`, and is named
  `Service '<name>' check` (agent/agent.go addServiceInternal). Answers 200 with no body.
- CS2 a TTL check turns `critical` ("TTL expired") when no pass came within its TTL;
  `PUT /v1/agent/check/pass/:check_id` makes it `passing` (agent/checks/check.go CheckTTL;
  agent/agent_endpoint.go AgentCheckPass). An unknown check ID answers 404 "Unknown check ID ..."
  (agent/acl.go vetCheckUpdateWithAuthorizer).
- CS3 `PUT /v1/agent/service/maintenance/:id?enable=true&reason=R` adds the check
  `_service_maintenance:<id>`, "Service Maintenance Mode", `critical`, notes R or a default
  (agent/agent.go EnableServiceMaintenance); the service's TTL passes do not touch it, so the
  instance stays out of `passing` health reads until maintenance is disabled. Without `enable`:
  400 "Missing value for enable"; an unknown ID: 404 (agent/agent_endpoint.go
  AgentServiceMaintenance, agent/acl.go vetServiceUpdateWithAuthorizer).
- CS4 `PUT /v1/agent/service/deregister/:id` removes the service and its checks from the agent and
  syncs at once (s.syncChanges); an unknown ID answers 404 "Unknown service ID %q. Ensure that
  the service ID is passed, not the service name." (agent/acl.go vetServiceUpdateWithAuthorizer).
- CS5 anti-entropy: the agent's services and checks are the truth for its node; a sync adds to
  the catalog what the agent holds and removes what it does not
  (https://developer.hashicorp.com/consul/docs/architecture/anti-entropy; agent/local/state.go
  SyncFull). So a catalog deregistration of a service the agent still holds comes back at the
  next full sync (`sync()`, or every `sync_interval_seconds`).
- CS6 `PUT /v1/catalog/deregister` with `Node` and `ServiceID` removes that catalog entry and
  answers `true`, also when there was none (agent/catalog_endpoint.go CatalogDeregister;
  https://developer.hashicorp.com/consul/api-docs/catalog#deregister-entity); no `Node`: 500.
- CS7 `GET /v1/catalog/service/:service` answers a JSON list (`[]` when none) of entries with
  `Node`, `ServiceID`, `ServiceName`, ...; `GET /v1/health/service/:service` entries with `Node`,
  `Service`, `Checks`, and `passing` keeps those whose checks all pass; both set `X-Consul-Index`
  (agent/catalog_endpoint.go, agent/health_endpoint.go, agent/http.go setMeta). Of `filter`
  (go-bexpr) only the form `ServiceID == "<id>"` is understood here; any other answers 400.
- CS8 ACLs: a list read that dropped entries the token may not read carries
  `X-Consul-Results-Filtered-By-ACLs: true`, only for a request with a token (agent/http.go
  setResultsFilteredByACLs; agent/agent_endpoint.go AgentServices).
- CS9 Community Edition answers 400 to `ns` or `partition` (query) and to `X-Consul-Namespace`
  or `X-Consul-Partition` (headers): 'Invalid query parameter: "ns" - Namespaces are a Consul
  Enterprise feature' (agent/http_ce.go parseEntMeta, parseEntMetaPartition).
- CS10 `GET /v1/agent/self` has `Config.NodeName` and `Config.Datacenter`
  (agent/agent_endpoint.go AgentSelf). `GET /v1/agent/services` maps IDs to services.

Faults: `drop` closes every connection without an answer (a partition), `stop()` stops
listening (connection refused), `delay_seconds` holds each answer, `fail_next` answers 500 as a
server without a leader does, `sync_fails` keeps agent changes out of the catalog (an entry
"removed" but still there), `deny_catalog_writes` answers 403 to catalog deregistrations.
`after[name]` runs a coroutine after a handler's change and before its answer; names are
`register`, `deregister`, `maintenance`, `pass`, `catalog_deregister`, ... (the handler's).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.test_utils import TestServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

MAINTENANCE_PREFIX = "_service_maintenance:"
DEFAULT_MAINTENANCE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
_FILTER = re.compile(r'^\s*ServiceID\s*==\s*"((?:[^"\\]|\\.)*)"\s*$')
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Check:
    """A health check on the agent; the catalog shares the object once synced (CS2, CS5)."""

    check_id: str
    name: str
    service_id: str
    service_name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    ttl_seconds: float | None = None
    expires_at: float = 0.0

    def current(self) -> str:
        loop = asyncio.get_running_loop()
        if self.ttl_seconds is not None and loop.time() >= self.expires_at:
            self.status, self.output = "critical", "TTL expired"
        return self.status

    def view(self, node: str) -> dict[str, Any]:
        return {
            "Node": node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.current(),
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
        }


@dataclass
class Service:
    """A service registered with the agent."""

    service_id: str
    name: str
    address: str = ""
    port: int = 0
    tags: list[str] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)


class FakeConsul:
    """One agent (node `node_name`) and the catalog it syncs to, over loopback HTTP."""

    def __init__(
        self,
        *,
        node_name: str = "k8s-node-1",
        enterprise: bool = False,
        sync_interval_seconds: float | None = None,
    ) -> None:
        self.node_name = node_name
        self.datacenter = "dc1"
        self.enterprise = enterprise
        self.sync_interval_seconds = sync_interval_seconds
        #: The agent's local state (CS1-CS4).
        self.services: dict[str, Service] = {}
        #: The catalog: (node, service ID) -> the service as last synced (CS5, CS6).
        self.catalog: dict[tuple[str, str], Service] = {}
        #: Service IDs the token may not read (CS8).
        self.acl_hidden: set[str] = set()
        self.drop = False
        self.delay_seconds = 0.0
        self.fail_next = 0
        self.sync_fails = False
        self.deny_catalog_writes = False
        self.after: dict[str, Callable[[], Awaitable[None]]] = {}
        #: (method, path) of every request; the tokens they carried.
        self.log: list[tuple[str, str]] = []
        self.tokens: list[str | None] = []
        self.index = 1
        #: Set by every sync (CS5).
        self.synced = asyncio.Event()
        self._released = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None
        app = web.Application(middlewares=[self._faults])
        add = app.router.add_route
        add("PUT", "/v1/agent/service/register", self._register)
        add("PUT", "/v1/agent/service/deregister/{id}", self._deregister)
        add("PUT", "/v1/agent/service/maintenance/{id}", self._maintenance)
        add("PUT", "/v1/agent/check/pass/{id}", self._pass)
        add("GET", "/v1/agent/services", self._agent_services)
        add("GET", "/v1/agent/self", self._self)
        add("GET", "/v1/catalog/service/{service}", self._catalog_service)
        add("GET", "/v1/health/service/{service}", self._health_service)
        add("PUT", "/v1/catalog/deregister", self._catalog_deregister)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        await self.server.start_server()
        if self.sync_interval_seconds is not None:
            self._syncer = asyncio.create_task(self._sync_every(), name="fake-consul-sync")

    async def stop(self) -> None:
        """Stop listening: later requests are refused."""
        self._released.set()
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.gather(self._syncer, return_exceptions=True)
            self._syncer = None
        await self.server.close()

    def address(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    # The agent's anti-entropy (CS5).

    def sync(self) -> None:
        """A full sync: the catalog's entries of this node become the agent's services."""
        for key in [k for k in self.catalog if k[0] == self.node_name]:
            if key[1] not in self.services:
                del self.catalog[key]
        for service in self.services.values():
            self.catalog[(self.node_name, service.service_id)] = service
        self.index += 1
        self.synced.set()

    def _sync_changes(self) -> None:
        if not self.sync_fails:
            self.sync()

    async def _sync_every(self) -> None:
        assert self.sync_interval_seconds is not None
        while True:
            await asyncio.sleep(self.sync_interval_seconds)
            self.sync()

    # Cross-cutting: faults, tokens, Community Edition's refusals (CS9).

    @web.middleware
    async def _faults(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.log.append((request.method, request.path))
        self.tokens.append(request.headers.get("X-Consul-Token"))
        if self.drop and request.transport is not None:
            request.transport.close()
            return web.Response(status=599)
        if self.delay_seconds:
            try:
                async with asyncio.timeout(self.delay_seconds):
                    await self._released.wait()
            except TimeoutError:
                pass
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(
                status=500,
                text="rpc error making call: No cluster leader",
                content_type="text/plain",
            )
        if not self.enterprise and request.path != "/v1/agent/self":
            refused = _enterprise_only(request)
            if refused:
                return web.Response(status=400, text=refused, content_type="text/plain")
        response = await handler(request)
        hook = self.after.get(handler.__name__.lstrip("_"))
        if hook is not None:
            await hook()
        return response

    # The agent (CS1-CS4, CS10).

    async def _register(self, request: web.Request) -> web.Response:
        body = _lower(await request.json())
        name = body.get("name", "")
        if not name:
            return _text(400, "Missing service name")
        service_id = body.get("id") or name
        service = Service(service_id, name, body.get("address", ""), int(body.get("port", 0)))
        service.tags = list(body.get("tags") or [])
        checks = [body["check"]] if body.get("check") else list(body.get("checks") or [])
        loop = asyncio.get_running_loop()
        for i, spec in enumerate(checks, start=1):
            check_id = spec.get("checkid") or spec.get("id") or f"service:{service_id}"
            if not (spec.get("checkid") or spec.get("id")) and len(checks) > 1:
                check_id += f":{i}"
            ttl = _seconds(spec["ttl"]) if spec.get("ttl") else None
            service.checks[check_id] = Check(
                check_id,
                spec.get("name") or f"Service '{name}' check",
                service_id,
                name,
                status=spec.get("status") or "critical",
                ttl_seconds=ttl,
                expires_at=loop.time() + (ttl or 0.0),
            )
        old = self.services.get(service_id)
        if old is not None:  # a re-registration keeps maintenance mode
            service.checks.update(
                {k: c for k, c in old.checks.items() if k.startswith(MAINTENANCE_PREFIX)}
            )
        self.services[service_id] = service
        self._sync_changes()
        return web.Response()

    async def _deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        if service_id not in self.services:
            return _unknown_service(service_id)
        del self.services[service_id]
        self._sync_changes()
        return web.Response()

    async def _maintenance(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        if "enable" not in request.query:
            return _text(400, "Missing value for enable")
        raw = request.query["enable"]
        if raw.lower() not in {"1", "t", "true", "0", "f", "false"}:
            return _text(400, f'Invalid value for enable: "{raw}"')
        service = self.services.get(service_id)
        if service is None:
            return _unknown_service(service_id)
        check_id = MAINTENANCE_PREFIX + service_id
        if raw.lower() in {"1", "t", "true"}:
            reason = request.query.get("reason") or DEFAULT_MAINTENANCE_REASON
            service.checks.setdefault(
                check_id,
                Check(check_id, "Service Maintenance Mode", service_id, service.name, notes=reason),
            )
        else:
            service.checks.pop(check_id, None)
        self._sync_changes()
        return web.Response()

    async def _pass(self, request: web.Request) -> web.Response:
        check_id = request.match_info["id"]
        check = next(
            (s.checks[check_id] for s in self.services.values() if check_id in s.checks), None
        )
        if check is None:
            return _text(
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, '
                "not the check name.",
            )
        if check.ttl_seconds is None:
            return _text(500, f'CheckID "{check_id}" does not have associated TTL')
        check.status, check.output = "passing", request.query.get("note", "")
        check.expires_at = asyncio.get_running_loop().time() + check.ttl_seconds
        return web.Response()

    async def _agent_services(self, request: web.Request) -> web.Response:
        seen = {i: s for i, s in self.services.items() if i not in self.acl_hidden}
        body = {i: _agent_view(s, self.datacenter) for i, s in seen.items()}
        return _json(body, self._filtered(request, len(seen) != len(self.services)))

    async def _self(self, _request: web.Request) -> web.Response:
        config = {
            "Datacenter": self.datacenter,
            "NodeName": self.node_name,
            "NodeID": "4e2a4b7c-0000-4000-8000-000000000001",
            "Server": False,
            "Version": "1.20.0",
        }
        return _json({"Config": config, "Member": {"Name": self.node_name}})

    # The catalog and health reads (CS6-CS8).

    def _entries(self, name: str) -> list[tuple[str, Service]]:
        return [(node, s) for (node, _), s in self.catalog.items() if s.name == name]

    def _read(self, request: web.Request) -> tuple[list[tuple[str, Service]], bool] | str:
        entries = self._entries(request.match_info["service"])
        expression = request.query.get("filter")
        if expression is not None:
            match = _FILTER.match(expression)
            if match is None:
                return f"Failed to create boolean expression evaluator: {expression}"
            wanted = re.sub(r"\\(.)", r"\1", match.group(1))
            entries = [(n, s) for n, s in entries if s.service_id == wanted]
        seen = [(n, s) for n, s in entries if s.service_id not in self.acl_hidden]
        return seen, len(seen) != len(entries)

    async def _catalog_service(self, request: web.Request) -> web.Response:
        read = self._read(request)
        if isinstance(read, str):
            return _text(400, read)
        seen, filtered = read
        body = [_catalog_view(node, s, self.datacenter) for node, s in seen]
        return _json(body, self._filtered(request, filtered))

    async def _health_service(self, request: web.Request) -> web.Response:
        read = self._read(request)
        if isinstance(read, str):
            return _text(400, read)
        seen, filtered = read
        passing = request.query.get("passing") not in (None, "0", "false")
        body = [
            {
                "Node": {"Node": node, "Datacenter": self.datacenter},
                "Service": _agent_view(s, self.datacenter),
                "Checks": [c.view(node) for c in s.checks.values()],
            }
            for node, s in seen
            if not passing or all(c.current() == "passing" for c in s.checks.values())
        ]
        return _json(body, self._filtered(request, filtered))

    async def _catalog_deregister(self, request: web.Request) -> web.Response:
        body = _lower(await request.json())
        if self.deny_catalog_writes:
            return _text(403, "Permission denied: token lacks node:write")
        node = body.get("node", "")
        if not node:
            return _text(500, "Must provide node")
        if body.get("serviceid"):
            self.catalog.pop((node, body["serviceid"]), None)
        else:
            for key in [k for k in self.catalog if k[0] == node]:
                del self.catalog[key]
        self.index += 1
        return _json(body=True)

    def _filtered(self, request: web.Request, filtered: bool) -> dict[str, str]:
        headers = {"X-Consul-Index": str(self.index)}
        if filtered and request.headers.get("X-Consul-Token"):
            headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        return headers


def _enterprise_only(request: web.Request) -> str | None:
    if request.headers.get("X-Consul-Namespace"):
        return 'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature'
    if request.query.get("ns"):
        return 'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'
    if request.headers.get("X-Consul-Partition"):
        return 'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature'
    if request.query.get("partition"):
        return 'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature'
    return None


def _unknown_service(service_id: str) -> web.Response:
    return _text(
        404,
        f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
        "not the service name.",
    )


def _agent_view(service: Service, datacenter: str) -> dict[str, Any]:
    return {
        "ID": service.service_id,
        "Service": service.name,
        "Tags": service.tags,
        "Address": service.address,
        "Port": service.port,
        "Meta": {},
        "Datacenter": datacenter,
    }


def _catalog_view(node: str, service: Service, datacenter: str) -> dict[str, Any]:
    return {
        "Node": node,
        "Datacenter": datacenter,
        "ServiceID": service.service_id,
        "ServiceName": service.name,
        "ServiceTags": service.tags,
        "ServiceAddress": service.address,
        "ServicePort": service.port,
    }


def _lower(value: Any) -> Any:
    """Keys lower-cased, as Consul matches them (CS1)."""
    if isinstance(value, dict):
        return {str(k).lower(): _lower(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower(v) for v in value]
    return value


def _seconds(duration: str) -> float:
    match = _DURATION.match(str(duration))
    if match is None:
        raise web.HTTPBadRequest(text=f"Request decode failed: bad duration {duration!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _json(body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)
