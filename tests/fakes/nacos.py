"""Nacos's naming HTTP API (2.x, 3.x): the part the Nacos back end and the official v1 client use.

Facts pinned, from alibaba/nacos at 486e198 (paths below `naming/src/main/java/com/alibaba/nacos/
naming/` unless said otherwise) and the Open API guide (https://nacos.io/docs/open-api):

- N1 Paths: v1 `/nacos/v1/ns/instance` (+ `/list`, `/beat`), v2 `/nacos/v2/ns/instance`, v3
  client `/nacos/v3/client/ns/instance` (register, heartbeat, deregister, list) and v3 admin
  `/nacos/v3/admin/ns/instance` (register, update, deregister, detail, list)
  (misc/UtilsAndCommons.java; controllers/InstanceController.java, v2/InstanceControllerV2.java,
  v3/InstanceOpenApiController.java, v3/InstanceControllerV3.java). The v3 client API has no
  update and no detail. A 2.x server has no v3 path: Spring's JSON 404.
- N2 Answers: v1 writes answer the text `ok`; v2/v3 answer `{"code":0,"message":"success","data":
  ...}` (api/.../model/v2/Result.java).
- N3 Parameters: serviceName, groupName (default DEFAULT_GROUP; v1 also takes `group@@service`,
  web/ServiceNameFilter.java), namespaceId (default `public`), clusterName (default DEFAULT; v1
  also `cluster`), ip, port, ephemeral (default true), weight (default 1), enabled (v1 also
  `enable`; default true), metadata (JSON) (pojo/instance/HttpRequestInstanceBuilder.java,
  model/form/InstanceForm.java).
- N4 DELETE answers ok whether or not the instance exists; the ephemeral flag picks the client
  it is removed from (core/InstanceOperatorClientImpl.java removeInstance).
- N5 Update (PUT) needs the service to exist (else 400, code 21004 "instance error") and stores
  enabled, weight and metadata as an override that wins over the registration, outlives a
  deletion and applies to a re-registration (InstanceOperatorClientImpl.updateInstance,
  utils/InstanceUtil.java updateInstanceMetadata; the Open API guide's note on PUT instance).
- N6 Detail (GET) finds disabled instances too; a missing one is 404: v1 the text `no matched ip
  found!` (or `no ips found for cluster ...` when the service has none), v2/v3 `{"code":20004,
  "message":"resource not found","data":...}` (InstanceOperatorClientImpl.getInstance0,
  core/.../exception/NacosApiExceptionHandler.java, exception/ResponseExceptionHandler.java).
  v1 and v2 details do not show `enabled`; v3 answers the whole Instance.
- N7 Lists hide disabled instances (utils/ServiceUtil.java doSelectInstances, enableOnly).
- N8 A v1 beat (`PUT /v1/ns/instance/beat` with `beat` JSON) re-registers a missing ephemeral
  instance; it only refreshes health, never `enabled` or the weight; it answers
  `{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":...}` (handleBeat,
  healthcheck/heartbeat/ClientBeatProcessorV2.java). A v3 heartbeat (`POST ...?heartBeat=true`)
  of a missing instance answers code 21003 "instance not found" and registers nothing.
- N9 Auth: `POST /nacos/v1/auth/login` (v3: `/nacos/v3/auth/user/login`) with username and
  password answers `{"accessToken","tokenTtl","globalAdmin","username"}` (default TTL 18000 s);
  requests carry `accessToken` (parameter, or `Authorization: Bearer`); a bad, expired or missing
  token is 403 with Spring's error JSON whose message is `token expired!` / `token invalid!`
  (plugin-default-impl/.../controller/UserController.java, jwt/NacosSignatureAlgorithm.java,
  core/.../auth/AbstractWebAuthFilter.java).
- N10 Nacos 3 answers 410 (code 40000 "API deprecated") to the v1/v2 admin API (v1 update and
  detail; every v2 instance call) unless nacos.core.api.compatibility.admin.enabled
  (core/.../controller/compatibility/ApiCompatibilityFilter.java, ApiCompatibilityConfig.java).

Faults: `hang` (no answer), `fail_next` (that many 503s), `sticky` (DELETE answers ok, the
instance stays), and `after_delete`: awaited before a DELETE answers, where a test's live client
beats (so "re-registered after the delete" is deterministic).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.test_utils import TestServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

Key = tuple[str, str, str, str, str, int]
Params = dict[str, str]

DEFAULT_GROUP = "DEFAULT_GROUP"
PUBLIC = "public"
RESOURCE_NOT_FOUND = 20004
INSTANCE_NOT_FOUND = 21003
INSTANCE_ERROR = 21004
API_DEPRECATED = 40000
BEAT_OK = 10200
BEAT_NOT_FOUND = 20404


@dataclass
class Instance:
    """One registered instance, as the registration said (before any override)."""

    ip: str
    port: int
    cluster: str
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    ephemeral: bool = True
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Override:
    """What an update stored (N5): it wins over the registration."""

    enabled: bool
    weight: float
    metadata: dict[str, str]


class NacosError(Exception):
    """An answer other than success: HTTP status, v2/v3 code, message."""

    def __init__(self, status: int, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.status, self.code, self.message, self.data = status, code, message, data


class FakeNacos:
    """A Nacos server of `major` version 2 or 3, auth on when `users` is given."""

    def __init__(self, *, major: int = 2, users: dict[str, str] | None = None) -> None:
        self.major = major
        #: Nacos 3's nacos.core.api.compatibility.admin.enabled (N10).
        self.admin_compat = False
        self.users = users
        self.token_ttl_seconds = 18000
        self.tokens: dict[str, bool] = {}  # token -> still valid
        self.logins = 0
        self.instances: dict[Key, Instance] = {}
        self.overrides: dict[Key, Override] = {}
        self.services: set[tuple[str, str, str]] = set()
        self.hang = False
        self.hang_started = asyncio.Event()
        self._release = asyncio.Event()
        self.fail_next = 0
        self.sticky = False
        self.after_delete: Callable[[], Awaitable[None]] | None = None
        #: "METHOD /path" of every request, in order.
        self.log: list[str] = []
        app = web.Application()
        app.router.add_post("/nacos/v1/auth/login", self._login)
        app.router.add_post("/nacos/v3/auth/user/login", self._login)
        for path in ("/nacos/v1/ns/instance", "/nacos/v2/ns/instance"):
            app.router.add_route("*", path, self._instance)
            app.router.add_get(path + "/list", self._list)
            app.router.add_put(path + "/beat", self._beat)
        for path in ("/nacos/v3/client/ns/instance", "/nacos/v3/admin/ns/instance"):
            app.router.add_route("*", path, self._instance)
            app.router.add_get(path + "/list", self._list)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        """Listen on a free loopback port."""
        await self.server.start_server()

    async def close(self) -> None:
        """Release hanging requests and stop."""
        self._release.set()
        await self.server.close()

    @property
    def url(self) -> str:
        """The server URL with its context path, as the back end's `server_url` takes it."""
        return str(self.server.make_url("/nacos"))

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (N9)."""
        self.tokens = dict.fromkeys(self.tokens, False)

    def register(self, service: str, instance: Instance, **where: str) -> None:
        """Register directly, as a client would (N3 defaults)."""
        key = self._key(
            where.get("namespace", PUBLIC), where.get("group", DEFAULT_GROUP), service, instance
        )
        self.services.add(key[:3])
        self.instances[key] = instance

    def seen(self, service: str, ip: str, port: int, **where: str) -> Instance | None:
        """The instance as a reader sees it (override applied), or None."""
        namespace, group = where.get("namespace", PUBLIC), where.get("group", DEFAULT_GROUP)
        cluster = where.get("cluster", "DEFAULT")
        key = (namespace, group, service, cluster, ip, port)
        return self._view(key)

    # --- requests ---

    async def _enter(self, request: web.Request) -> tuple[Params, web.Response | None]:
        self.log.append(f"{request.method} {request.path}")
        if self.hang:
            self.hang_started.set()
            await self._release.wait()
        params: Params = dict(request.query)
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if self.fail_next:
            self.fail_next -= 1
            return params, web.Response(status=503, text="server is busy")
        return params, None

    def _refused(self, request: web.Request, params: Params) -> web.Response | None:
        """Auth (N9) and API compatibility (N10), as the servlet filters answer them."""
        path = request.path
        if self.major == 2 and path.startswith("/nacos/v3/"):
            return _spring_error(404, "Not Found", "", path)
        if self.major == 3 and not self.admin_compat and _old_admin(request.method, path):
            result = {"code": API_DEPRECATED, "message": "API deprecated.", "data": None}
            return _spring_error(410, "Gone", json.dumps(result), path)
        if self.users is None:
            return None
        token = params.get("accessToken", "")
        bearer = request.headers.get("Authorization", "")
        token = token or bearer.removeprefix("Bearer ")
        if token not in self.tokens:
            return _spring_error(403, "Forbidden", "token invalid!", path)
        if not self.tokens[token]:
            return _spring_error(403, "Forbidden", "token expired!", path)
        return None

    async def _login(self, request: web.Request) -> web.Response:
        params, fault = await self._enter(request)
        if fault is not None:
            return fault
        if self.users is None or self.users.get(params.get("username", "")) != params.get(
            "password"
        ):
            message = "User not found! Please check user exist or password is right!"
            return _spring_error(403, "Forbidden", message, request.path)
        self.logins += 1
        token = secrets.token_hex(16)
        self.tokens[token] = True
        return web.json_response(
            {
                "accessToken": token,
                "tokenTtl": self.token_ttl_seconds,
                "globalAdmin": True,
                "username": params["username"],
            }
        )

    async def _instance(self, request: web.Request) -> web.Response:
        params, fault = await self._enter(request)
        if fault is not None:
            return fault
        refused = self._refused(request, params)
        if refused is not None:
            return refused
        version = request.path.split("/")[2]
        try:
            answer = await self._operate(request, params, version)
        except NacosError as e:
            return _answer_error(e, version)
        if answer is not None:
            return answer
        return web.Response(text="ok") if version == "v1" else _success("ok")

    async def _operate(
        self, request: web.Request, params: Params, version: str
    ) -> web.Response | None:
        """One instance call; None for a write that answers success."""
        admin = "/client/" not in request.path
        if request.method == "POST" and params.get("heartBeat") == "true":
            return self._v3_heartbeat(params)
        if request.method == "POST":
            self._register(params)
        elif request.method == "DELETE":
            await self._deregister(params)
        elif request.method == "PUT" and admin:
            self._update(params)
        elif request.method == "GET" and admin:
            return web.json_response(self._detail(params, version))
        else:
            return _spring_error(405, "Method Not Allowed", "", request.path)
        return None

    def _register(self, params: Params) -> None:
        key = self._key_of(params)
        instance = Instance(
            ip=key[4],
            port=key[5],
            cluster=key[3],
            weight=float(params.get("weight", "1")),
            healthy=_bool(params.get("healthy"), default=True),
            enabled=_bool(params.get("enabled", params.get("enable")), default=True),
            ephemeral=_bool(params.get("ephemeral"), default=True),
            metadata=json.loads(params["metadata"]) if params.get("metadata") else {},
        )
        self.services.add(key[:3])
        self.instances[key] = instance

    async def _deregister(self, params: Params) -> None:
        key = self._key_of(params)
        instance = self.instances.get(key)
        ephemeral = _bool(params.get("ephemeral"), default=True)
        if instance is not None and instance.ephemeral == ephemeral and not self.sticky:
            del self.instances[key]
        if self.after_delete is not None:
            await self.after_delete()

    def _update(self, params: Params) -> None:
        key = self._key_of(params)
        if key[:3] not in self.services:
            service = f"Service{{namespace='{key[0]}', group='{key[1]}', name='{key[2]}'}}"
            detail = f"service not found, namespace: {key[0]}, service: {service}"
            raise NacosError(400, INSTANCE_ERROR, "instance error", detail)
        self.overrides[key] = Override(
            enabled=_bool(params.get("enabled", params.get("enable")), default=True),
            weight=float(params.get("weight", "1")),
            metadata=json.loads(params["metadata"]) if params.get("metadata") else {},
        )

    def _detail(self, params: Params, version: str) -> dict[str, Any]:
        key = self._key_of(params)
        seen = self._view(key)
        if seen is None:
            if not any(k[:3] == key[:3] for k in self.instances):
                message = f"no ips found for cluster {key[3]} in service {key[1]}@@{key[2]}"
            else:
                message = "no matched ip found!"
            raise NacosError(404, RESOURCE_NOT_FOUND, "resource not found", message)
        grouped = f"{key[1]}@@{key[2]}"
        if version == "v3":
            return {"code": 0, "message": "success", "data": _instance_json(seen, grouped)}
        detail = {
            "service" if version == "v1" else "serviceName": grouped,
            "ip": seen.ip,
            "port": seen.port,
            "clusterName": seen.cluster,
            "weight": seen.weight,
            "healthy": seen.healthy,
            "instanceId": _instance_id(seen, grouped),
            "metadata": seen.metadata,
        }
        return detail if version == "v1" else {"code": 0, "message": "success", "data": detail}

    async def _list(self, request: web.Request) -> web.Response:
        params, fault = await self._enter(request)
        if fault is not None:
            return fault
        refused = self._refused(request, params)
        if refused is not None:
            return refused
        namespace, group, service = self._service_of(params)
        hosts = []
        for key in self.instances:
            seen = self._view(key)
            if key[:3] == (namespace, group, service) and seen is not None and seen.enabled:
                hosts.append(_instance_json(seen, f"{group}@@{service}"))
        info = {"name": f"{group}@@{service}", "groupName": group, "hosts": hosts}
        if "/v1/" in request.path:
            return web.json_response({**info, "clusters": "", "cacheMillis": 10000})
        return _success(hosts if "/v3/" in request.path else info)

    async def _beat(self, request: web.Request) -> web.Response:
        params, fault = await self._enter(request)
        if fault is not None:
            return fault
        refused = self._refused(request, params)
        if refused is not None:
            return refused
        beat = json.loads(params["beat"]) if params.get("beat") else None
        if beat is not None:
            params = {
                **params,
                "ip": beat["ip"],
                "port": str(beat["port"]),
                "clusterName": beat.get("cluster") or params.get("clusterName", "DEFAULT"),
            }
        key = self._key_of(params)
        code = BEAT_OK
        if key not in self.instances:
            if beat is None:
                code = BEAT_NOT_FOUND
            else:  # N8: the beat registers the missing ephemeral instance again
                self.services.add(key[:3])
                weight = float(beat.get("weight", 1.0))
                metadata = beat.get("metadata") or {}
                self.instances[key] = Instance(key[4], key[5], key[3], weight, metadata=metadata)
        if code == BEAT_OK:
            self.instances[key].healthy = True
        return web.json_response(
            {"clientBeatInterval": 5000, "code": code, "lightBeatEnabled": True}
        )

    def _v3_heartbeat(self, params: Params) -> web.Response:
        key = self._key_of(params)
        if key not in self.instances:
            return web.json_response(
                {"code": INSTANCE_NOT_FOUND, "message": "instance not found", "data": None}
            )
        self.instances[key].healthy = True
        return _success("ok")

    # --- identity ---

    def _service_of(self, params: Params) -> tuple[str, str, str]:
        name = params.get("serviceName", "")
        if not name:
            raise web.HTTPBadRequest(text="Parameter 'serviceName' is missing")
        group = params.get("groupName") or DEFAULT_GROUP
        if "@@" in name:
            group, name = name.split("@@", 1)
        return params.get("namespaceId") or PUBLIC, group, name

    def _key_of(self, params: Params) -> Key:
        namespace, group, service = self._service_of(params)
        cluster = params.get("clusterName") or params.get("cluster") or "DEFAULT"
        if not params.get("ip") or not params.get("port"):
            raise web.HTTPBadRequest(text="Required parameter 'ip' or 'port' is not present")
        return namespace, group, service, cluster, params["ip"], int(params["port"])

    def _key(self, namespace: str, group: str, service: str, instance: Instance) -> Key:
        return namespace, group, service, instance.cluster, instance.ip, instance.port

    def _view(self, key: Key) -> Instance | None:
        instance = self.instances.get(key)
        if instance is None:
            return None
        override = self.overrides.get(key)
        if override is None:
            return instance
        metadata = {**instance.metadata, **override.metadata}
        return replace(
            instance, enabled=override.enabled, weight=override.weight, metadata=metadata
        )


def _old_admin(method: str, path: str) -> bool:
    """The v1/v2 endpoints marked ADMIN_API in @Compatibility (N10)."""
    if path.startswith("/nacos/v2/ns/instance"):
        return True
    return path == "/nacos/v1/ns/instance" and method in ("PUT", "GET", "PATCH")


def _bool(value: str | None, *, default: bool) -> bool:
    return default if value is None or value == "" else value.lower() == "true"


def _instance_id(instance: Instance, grouped: str) -> str:
    return f"{instance.ip}#{instance.port}#{instance.cluster}#{grouped}"


def _instance_json(instance: Instance, grouped: str) -> dict[str, Any]:
    fields = asdict(instance)
    fields["clusterName"] = fields.pop("cluster")
    return {"instanceId": _instance_id(instance, grouped), "serviceName": grouped, **fields}


def _success(data: Any) -> web.Response:
    return web.json_response({"code": 0, "message": "success", "data": data})


def _answer_error(error: NacosError, version: str) -> web.Response:
    if version == "v1":
        return web.Response(status=error.status, text=error.data)
    body = {"code": error.code, "message": error.message, "data": error.data}
    return web.json_response(body, status=error.status)


def _spring_error(status: int, error: str, message: str, path: str) -> web.Response:
    """Spring Boot's error page for sendError (server.error.include-message=ALWAYS)."""
    body = {
        "timestamp": "2025-09-02T08:45:13.000+00:00",
        "status": status,
        "error": error,
        "message": message,
        "path": path,
    }
    return web.json_response(body, status=status)
