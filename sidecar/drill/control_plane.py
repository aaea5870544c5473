"""A Kubernetes API server stand-in for the drill and the tests: pods, EndpointSlices, events.

It speaks the REST paths and JSON that kubernetes-asyncio uses, with the semantics of
reference/kubernetes.md: graceful pod deletion (A1-A12), EndpointSlices kept by a controller
(D1-D10), list and watch (E1-E11). Faults are injected on demand: answer with an error
status, answer slowly, drop every watch, expire every resource version, go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.drill.apistore import Store
from sidecar.drill.endpointslices import SERVICE_LABEL, reconcile
from sidecar.drill.listwatch import KINDS, ListWatch, status, true_param
from sidecar.drill.pod_deletion import DeleteRefused, decide

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

Object = dict[str, Any]


@dataclass
class Faults:
    """What the stand-in does wrong on purpose; the tests and the drill set these."""

    #: Answer matching API calls with this HTTP status instead of serving them.
    status: int | None = None
    #: Only calls whose path contains this text get the status or the delay (None: every one).
    path_contains: str | None = None
    #: How many calls get the status (None: until cleared).
    times: int | None = None
    #: Every API call waits this long before being served.
    delay_seconds: float = 0.0
    #: The next N watches from a specific revision find it expired (ERROR 410, E5).
    expire_next_watches: int = 0

    def applies_to(self, path: str) -> bool:
        """Whether the faults concern calls to this path."""
        return not self.path_contains or self.path_contains in path

    def failure_for(self, path: str) -> int | None:
        """The status to answer this path with, if a fault applies (and count it)."""
        if self.status is None or not self.applies_to(path):
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.status


@dataclass
class ControlPlane:
    """The stand-in: start it, point a kubeconfig at it, drive it from Python."""

    #: D10: how long the EndpointSlice controller takes to act on a pod change.
    controller_delay_seconds: float = 0.0
    max_endpoints_per_slice: int = 100
    history_limit: int = 1000
    bookmark_interval_seconds: float = 60.0
    #: E8: a watch without timeoutSeconds ends after [min, 2 x min) seconds.
    min_request_timeout_seconds: float = 1800.0
    #: E10: the WatchList feature gate.
    watch_list: bool = False
    #: E4: continue tokens expire after this long.
    continue_ttl_seconds: float = 300.0
    faults: Faults = field(default_factory=Faults)
    store: Store = field(init=False)
    #: Every API request served: (method, path, query), for asserting what a client did.
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    #: Watches answered with ERROR 410 (E5).
    expired_watches: int = 0
    _runner: web.AppRunner | None = None
    _pending_syncs: set[asyncio.TimerHandle] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = Store(history_limit=self.history_limit)
        self._listwatch = ListWatch(self)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        app = web.Application(middlewares=[self._middleware])
        for resource in ("pods", "services", "events"):
            self._routes(app, f"/api/v1/namespaces/{{ns}}/{resource}", resource)
        self._routes(
            app, "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", "endpointslices"
        )
        app.router.add_get("/api/v1/pods", self._listwatch.handler("pods"))
        app.router.add_route("PUT", "/api/v1/namespaces/{ns}/pods/{name}/status", self._put_status)
        app.router.add_route("PATCH", "/api/v1/namespaces/{ns}/pods/{name}/status", self._patch)
        app.router.add_get("/version", self._version)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        """Go away: open watches end, later calls are refused."""
        for handle in self._pending_syncs:
            handle.cancel()
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that points kubernetes-asyncio at this stand-in."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "agent", "user": {"token": "stand-in-token"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "agent"}}],
            "current-context": "stand-in",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    # -- driving it from Python (the drill's kubelet, the tests) ------------------------------

    def create(self, resource: str, obj: Object) -> Object:
        """Create an object as a POST would."""
        obj = json.loads(json.dumps(obj))
        if resource == "pods":
            spec = obj.setdefault("spec", {})
            spec.setdefault("terminationGracePeriodSeconds", 30)  # A1: defaulted at creation
            obj["metadata"].setdefault("generation", 1)
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        if resource == "services":
            obj["spec"].setdefault("ipFamilies", ["IPv4"])
        apiversion, kind = KINDS[resource]
        obj.update(apiVersion=apiversion, kind=kind)
        created = self.store.create(resource, obj)
        self._changed(resource, created["metadata"]["namespace"])
        return created

    def delete_pod(self, namespace: str, name: str, options: Object | None = None) -> Object:
        """A pod DELETE (A1-A8); DeleteRefused or KeyError as the API would answer."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(name)
        decision = decide(pod, options or {}, None, time.time())
        if decision.action == "unchanged":
            return pod
        result = self.store.update("pods", decision.pod)
        if decision.action == "remove":
            result = self.store.remove("pods", namespace, name)
        self._changed("pods", namespace)
        return result

    def patch_pod_status(self, namespace: str, name: str, patch: Object) -> Object:
        """Merge a status patch (the kubelet's status manager)."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(name)
        pod["status"] = _merge(pod.get("status", {}), patch)
        updated = self.store.update("pods", pod)
        self._changed("pods", namespace)
        return updated

    def set_ready(self, namespace: str, name: str, *, ready: bool) -> Object:
        """The pod's Ready condition, as the kubelet's readiness probe sets it (B3)."""
        pod = self.store.get("pods", namespace, name) or {}
        others = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] != "Ready"]
        ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
        return self.patch_pod_status(namespace, name, {"conditions": [*others, ready_condition]})

    def move_endpoint(self, namespace: str, service: str, pod_uid: str) -> None:
        """Repack one endpoint into a new slice: it sits in both for a moment (D8, D9)."""
        slices = self._slices(namespace, service)
        source = next(
            s
            for s in slices
            if any(e["targetRef"]["uid"] == pod_uid for e in s.get("endpoints") or [])
        )
        moved = [e for e in source["endpoints"] if e["targetRef"]["uid"] == pod_uid]
        fresh = json.loads(json.dumps(source))
        fresh["metadata"] = {
            k: v for k, v in source["metadata"].items() if k not in {"uid", "resourceVersion"}
        }
        fresh["metadata"]["name"] = f"{service}-moved{self.store.revision}"
        fresh["endpoints"] = moved
        self.store.create("endpointslices", fresh)
        source["endpoints"] = [e for e in source["endpoints"] if e["targetRef"]["uid"] != pod_uid]
        self.store.update("endpointslices", source)

    def expire_all(self) -> None:
        """Every resource version before now becomes too old to watch from (E5, E6)."""
        self.store.compact()

    def drop_watches(self) -> int:
        """Cut every open watch connection; returns how many."""
        return self.store.drop_watches()

    def events_for(self, namespace: str, name: str) -> list[Object]:
        """Events posted about one object."""
        return [
            e
            for e in self.store.items("events", namespace)
            if e.get("involvedObject", {}).get("name") == name
        ]

    def calls(self, method: str, path_contains: str, *, watch: bool | None = None) -> int:
        """How many API requests matched."""
        return sum(
            1
            for m, p, q in self.requests
            if m == method
            and path_contains in p
            and (watch is None or true_param(q.get("watch")) == watch)
        )

    # -- the controller -------------------------------------------------------------------

    def _changed(self, resource: str, namespace: str) -> None:
        if resource not in {"pods", "services"}:
            return
        if self.controller_delay_seconds <= 0:
            self._sync(namespace)
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.controller_delay_seconds, self._sync, namespace)
        self._pending_syncs.add(handle)

    def _slices(self, namespace: str, service: str) -> list[Object]:
        return [
            s
            for s in self.store.items("endpointslices", namespace)
            if s["metadata"].get("labels", {}).get(SERVICE_LABEL) == service
        ]

    def _sync(self, namespace: str) -> None:
        self._pending_syncs = {h for h in self._pending_syncs if not h.cancelled()}
        pods = self.store.items("pods", namespace)
        for service in self.store.items("services", namespace):
            name = service["metadata"]["name"]
            for write in reconcile(
                service,
                pods,
                self._slices(namespace, name),
                max_per_slice=self.max_endpoints_per_slice,
            ):
                if write.verb == "create":
                    self.store.create("endpointslices", write.slice)
                elif write.verb == "update":
                    self.store.update("endpointslices", write.slice)
                else:
                    meta = write.slice["metadata"]
                    self.store.remove("endpointslices", namespace, meta["name"])

    # -- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.faults.delay_seconds and self.faults.applies_to(request.path):
            await asyncio.sleep(self.faults.delay_seconds)
        code = self.faults.failure_for(request.path)
        if code is not None:
            reasons = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests"}
            return status(code, reasons.get(code, "InternalError"), f"injected fault: {code}")
        return await handler(request)

    def _routes(self, app: web.Application, base: str, resource: str) -> None:
        app.router.add_get(base, self._listwatch.handler(resource))
        app.router.add_post(base, self._post(resource))
        app.router.add_get(base + "/{name}", self._get(resource))
        app.router.add_delete(base + "/{name}", self._delete(resource))
        app.router.add_route("PATCH", base + "/{name}", self._patch)

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "34", "gitVersion": "v1.34.0-stand-in"})

    def _get(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def get(request: web.Request) -> web.Response:
            ns, name = request.match_info["ns"], request.match_info["name"]
            obj = self.store.get(resource, ns, name)
            if obj is None:
                return status(404, "NotFound", f'{resource} "{name}" not found')
            return web.json_response(obj)

        return get

    def _post(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def post(request: web.Request) -> web.Response:
            body = await _json_body(request)
            if body is None or not isinstance(body.get("metadata"), dict):
                return status(400, "BadRequest", "expected a JSON object with metadata")
            meta = body["metadata"]
            meta["namespace"] = request.match_info["ns"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{random.randrange(16**5):05x}"
            if not meta.get("name"):
                return status(422, "Invalid", "metadata.name: Required value: name is required")
            if self.store.get(resource, meta["namespace"], meta["name"]) is not None:
                return status(409, "AlreadyExists", f'{resource} "{meta["name"]}" already exists')
            return web.json_response(self.create(resource, body), status=201)

        return post

    def _delete(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def delete(request: web.Request) -> web.Response:
            ns, name = request.match_info["ns"], request.match_info["name"]
            options = await _json_body(request) or {}
            if "gracePeriodSeconds" in request.query and "gracePeriodSeconds" not in options:
                options["gracePeriodSeconds"] = request.query["gracePeriodSeconds"]
            if self.store.get(resource, ns, name) is None:
                return status(404, "NotFound", f'{resource} "{name}" not found')  # A8
            if resource != "pods":
                removed = self.store.remove(resource, ns, name)
                self._changed(resource, ns)
                return web.json_response(removed)
            try:
                return web.json_response(self.delete_pod(ns, name, options))  # A4
            except DeleteRefused as e:
                return status(e.code, e.reason, e.message)

        return delete

    async def _patch(self, request: web.Request) -> web.Response:
        """Merge patch (RFC 7386) of an object or a pod's status."""
        ns, name = request.match_info["ns"], request.match_info["name"]
        resource = _resource_of(request.path)
        patch = await _json_body(request)
        current = self.store.get(resource, ns, name)
        if current is None:
            return status(404, "NotFound", f'{resource} "{name}" not found')
        if patch is None:
            return status(400, "BadRequest", "expected a JSON merge patch")
        if request.path.endswith("/status"):
            return web.json_response(self.patch_pod_status(ns, name, patch.get("status", {})))
        updated = self.store.update(resource, _merge(current, patch))
        self._changed(resource, ns)
        return web.json_response(updated)

    async def _put_status(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return status(400, "BadRequest", "expected a Pod")
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self.store.get("pods", ns, name) is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        return web.json_response(self.patch_pod_status(ns, name, body.get("status", {})))


async def _json_body(request: web.Request) -> Object | None:
    if not request.can_read_body:
        return None
    with contextlib.suppress(ValueError):
        body = json.loads(await request.read())
        return body if isinstance(body, dict) else None
    return None


def _resource_of(path: str) -> str:
    parts = path.split("/")
    return parts[parts.index("namespaces") + 2]


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
