"""A Eureka server's REST API, the part clients and the coordinator call, over real HTTP.

Each fact it follows, with its source (Netflix/eureka, eureka-core unless said otherwise):

- Paths are `{base}/apps/{APP}` and `{base}/apps/{APP}/{id}` (ApplicationsResource
  `@Path("/{version}/apps")`; Spring Cloud serves it under `/eureka`). The app name is upper-cased
  (ApplicationResource's constructor: `appName.toUpperCase()`).
- Register: `POST /apps/{APP}` with `{"instance": {...}}`: 204; 400 with a reason for a missing
  instanceId, hostName, ipAddr, app or dataCenterInfo, or an app other than the path's
  (ApplicationResource.addInstance).
- Heartbeat: `PUT /apps/{APP}/{id}`: 200, 404 for an unknown instance (InstanceResource.renewLease,
  AbstractInstanceRegistry.renew); its `status` query parameter is ignored, and an existing
  override is applied to the stored status (renew -> OverrideExistsRule).
- Status override: `PUT .../status?value=S`: 404 for an unknown instance, 500 for a value that is
  no InstanceStatus, else 200 (InstanceResource.statusUpdate); the override is kept by instance id
  and wins at every renew and register (AbstractInstanceRegistry.statusUpdate, register,
  overriddenInstanceStatusMap; rule/OverrideExistsRule). `DELETE .../status[?value=S]` removes it,
  the status becoming S or UNKNOWN (deleteStatusOverride).
- Delete: `DELETE /apps/{APP}/{id}`: 200, 404 for an unknown instance; it also drops the override
  (InstanceResource.cancelLease, AbstractInstanceRegistry.internalCancel), so the instance a live
  client re-registers after its heartbeat's 404 comes back with the client's own status (UP).
  The Java client re-registers on that 404 (eureka-client DiscoveryClient.renew), as does
  py-eureka-client (EurekaClient.send_heartbeat).
- Reads: `GET /apps/{APP}/{id}`: 200 `{"instance": {...}}`, 404 when unknown
  (InstanceResource.getInstanceInfo; the JSON root name is "instance", EurekaJacksonCodec);
  `GET /apps/{APP}`: `{"application": {"name", "instance": [...]}}`. JSON only when Accept asks
  for it; XML by default (`@Produces({"application/xml", "application/json"})`, and
  getApplication's `acceptHeader.contains("json")`); 406 for an Accept naming neither (JAX-RS).
  JSON names the override `overriddenStatus`, XML `overriddenstatus` (EurekaJacksonCodec,
  Converters).
- Replication: register, heartbeat, status updates and delete done on one peer are replayed on
  every other peer (PeerAwareInstanceRegistryImpl.replicateToPeers); a peer may miss them.
- Basic auth (optional) answers 401 without it, as Spring Security in front of a Eureka server.

Not modelled: XML request bodies (415 here), lastDirtyTimestamp reconciliation, lease expiry and
eviction, self-preservation, deltas and the response cache. Faults: `down()` (connections refused),
`hang` (no answer), `fail_next` (the next requests answer 503), `sticky_deletes` (a delete answers
200 but the instance stays).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web
from aiohttp.test_utils import TestServer

STATUSES = frozenset({"UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"})
_REQUIRED = (
    ("instanceId", "Missing instanceId"),
    ("hostName", "Missing hostname"),
    ("ipAddr", "Missing ip address"),
    ("app", "Missing appName"),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeEureka:
    """One Eureka server: instances by app and id, overrides by id, faults, a request log."""

    def __init__(
        self, base: str = "/eureka", *, credentials: tuple[str, str] | None = None
    ) -> None:
        self.base = base.rstrip("/")
        #: app -> instance id -> the instance as JSON would show it.
        self.apps: dict[str, dict[str, dict[str, Any]]] = {}
        #: instance id -> overridden status (AbstractInstanceRegistry.overriddenInstanceStatusMap).
        self.overrides: dict[str, str] = {}
        #: Peers this one replicates to; one with `missing_replication` set ignores it.
        self.peers: list[FakeEureka] = []
        self.missing_replication = False
        self.credentials = credentials
        self.hang = False
        self.hang_started = asyncio.Event()
        self.fail_next = 0
        self.sticky_deletes = 0
        #: (method, what, status) of every request, e.g. ("DELETE", "WEB/10.0.0.7:8080", 200).
        self.log: list[tuple[str, str, int]] = []
        app = web.Application(middlewares=[self._faults])
        one = self.base + "/apps/{app}/{id}"
        app.router.add_post(self.base + "/apps/{app}", self._register)
        app.router.add_get(self.base + "/apps/{app}", self._read_app)
        app.router.add_put(one, self._heartbeat)
        app.router.add_get(one, self._read)
        app.router.add_delete(one, self._delete)
        app.router.add_put(one + "/status", self._override)
        app.router.add_delete(one + "/status", self._drop_override)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        await self.server.close()

    async def down(self) -> None:
        """Stop listening: connections to it are refused from now on."""
        await self.server.close()

    def url(self) -> str:
        """The serviceUrl clients use, e.g. http://127.0.0.1:PORT/eureka."""
        return str(self.server.make_url(self.base))

    def instance(self, app: str, instance_id: str) -> dict[str, Any] | None:
        return self.apps.get(app.upper(), {}).get(instance_id)

    def seed(self, app: str, instance_id: str, status: str = "UP") -> None:
        """Register an instance directly (no request, no replication)."""
        self._store(_minimal(app.upper(), instance_id, status))

    # -- the registry's own operations, also what a replication replays -------------------------

    def _store(self, instance: dict[str, Any]) -> None:
        instance = dict(instance)
        instance.pop("overriddenstatus", None)
        own = instance.get("status", "UP")
        override = self.overrides.get(instance["instanceId"])
        # DownOrStartingRule first, then OverrideExistsRule, then the registrant's own status.
        status = own if own in ("DOWN", "STARTING") else override or own
        lease = dict(instance.get("leaseInfo") or {})
        lease["registrationTimestamp"] = _now_ms()
        instance.update(
            status=status,
            overriddenStatus=override or "UNKNOWN",
            leaseInfo=lease,
            actionType="ADDED",
            lastUpdatedTimestamp=str(_now_ms()),
        )
        self.apps.setdefault(instance["app"], {})[instance["instanceId"]] = instance

    def _renew(self, app: str, instance_id: str) -> bool:
        instance = self.instance(app, instance_id)
        if instance is None:
            return False
        override = self.overrides.get(instance_id)
        if override is not None and instance["status"] not in ("DOWN", "STARTING"):
            instance["status"] = override
        return True

    def _set_override(self, app: str, instance_id: str, status: str) -> bool:
        instance = self.instance(app, instance_id)
        if instance is None:
            return False
        self.overrides[instance_id] = status
        instance.update(status=status, overriddenStatus=status, actionType="MODIFIED")
        return True

    def _delete_override(self, app: str, instance_id: str, status: str) -> bool:
        instance = self.instance(app, instance_id)
        if instance is None:
            return False
        if self.overrides.pop(instance_id, None) is not None:
            instance.update(status=status, overriddenStatus="UNKNOWN", actionType="MODIFIED")
        return True

    def _cancel(self, app: str, instance_id: str) -> bool:
        self.overrides.pop(instance_id, None)
        return self.apps.get(app, {}).pop(instance_id, None) is not None

    def _replicate(self, operation: str, *args: Any) -> None:
        for peer in self.peers:
            if not peer.missing_replication:
                getattr(peer, operation)(*args)

    # -- HTTP ------------------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        what = request.match_info.get("app", "?").upper()
        if "id" in request.match_info:
            what += "/" + request.match_info["id"]
        if request.path.endswith("/status"):
            what += "/status"
        if self.hang:
            self.hang_started.set()
            await asyncio.Event().wait()
        response: web.StreamResponse
        if self.fail_next:
            self.fail_next -= 1
            response = web.Response(status=503, text="Service Unavailable")
        elif self.credentials is not None and not self._authorized(request):
            response = web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        else:
            response = await handler(request)
        self.log.append((request.method, what, response.status))
        return response

    def _authorized(self, request: web.Request) -> bool:
        assert self.credentials is not None
        user, password = self.credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {token}"

    async def _register(self, request: web.Request) -> web.Response:
        app = request.match_info["app"].upper()
        if "json" not in request.headers.get("Content-Type", ""):
            return web.Response(status=415, text="this fake reads JSON bodies only")
        instance = (await request.json()).get("instance") or {}
        for key, reason in _REQUIRED:
            if not instance.get(key):
                return web.Response(status=400, text=reason)
        if instance["app"] != app:
            return web.Response(
                status=400, text=f"Mismatched appName, expecting {app} but was {instance['app']}"
            )
        if not (instance.get("dataCenterInfo") or {}).get("name"):
            return web.Response(status=400, text="Missing dataCenterInfo")
        self._store(instance)
        self._replicate("_store", instance)
        return web.Response(status=204)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        app, instance_id = request.match_info["app"].upper(), request.match_info["id"]
        if not self._renew(app, instance_id):
            return web.Response(status=404)
        self._replicate("_renew", app, instance_id)
        return web.Response()

    async def _override(self, request: web.Request) -> web.Response:
        app, instance_id = request.match_info["app"].upper(), request.match_info["id"]
        if self.instance(app, instance_id) is None:
            return web.Response(status=404)
        status = request.query.get("value", "")
        if status not in STATUSES:
            return web.Response(status=500)  # InstanceStatus.valueOf throws; caught as 500
        self._set_override(app, instance_id, status)
        self._replicate("_set_override", app, instance_id, status)
        return web.Response()

    async def _drop_override(self, request: web.Request) -> web.Response:
        app, instance_id = request.match_info["app"].upper(), request.match_info["id"]
        if self.instance(app, instance_id) is None:
            return web.Response(status=404)
        status = request.query.get("value", "UNKNOWN")
        if status not in STATUSES:
            return web.Response(status=500)
        self._delete_override(app, instance_id, status)
        self._replicate("_delete_override", app, instance_id, status)
        return web.Response()

    async def _delete(self, request: web.Request) -> web.Response:
        app, instance_id = request.match_info["app"].upper(), request.match_info["id"]
        if self.instance(app, instance_id) is not None and self.sticky_deletes:
            self.sticky_deletes -= 1
            return web.Response()
        if not self._cancel(app, instance_id):
            return web.Response(status=404)
        self._replicate("_cancel", app, instance_id)
        return web.Response()

    async def _read(self, request: web.Request) -> web.Response:
        instance = self.instance(request.match_info["app"], request.match_info["id"])
        if instance is None:
            return web.Response(status=404)
        return _answer(request, {"instance": instance})

    async def _read_app(self, request: web.Request) -> web.Response:
        name = request.match_info["app"].upper()
        instances = list(self.apps.get(name, {}).values())
        if not instances:
            return web.Response(status=404)
        return _answer(request, {"application": {"name": name, "instance": instances}})


def _answer(request: web.Request, document: dict[str, Any]) -> web.Response:
    """JSON if Accept asks for it, XML if it allows it (or is absent), else 406."""
    accept = request.headers.get("Accept", "")
    if "json" in accept:
        return web.json_response(document)
    if not accept or any(t in accept for t in ("*/*", "application/*", "xml")):
        [(root, body)] = document.items()
        element = _xml(root, body)
        return web.Response(body=ET.tostring(element), content_type="application/xml")
    return web.Response(status=406)


def _xml(tag: str, value: Any) -> ET.Element:
    """Eureka's JSON back into its XML: `@name` keys are attributes, `$` the text."""
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("@"):
                element.set(key[1:], str(item))
            elif key == "$":
                element.text = str(item)
            elif isinstance(item, list):
                element.extend(_xml(key, i) for i in item)
            else:
                name = "overriddenstatus" if key == "overriddenStatus" else key
                element.append(_xml(name, item))
    else:
        element.text = str(value)
    return element


def _minimal(app: str, instance_id: str, status: str) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "hostName": instance_id,
        "app": app,
        "ipAddr": "10.0.0.7",
        "status": status,
        "port": {"$": 8080, "@enabled": "true"},
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
    }
