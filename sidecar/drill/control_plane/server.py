"""The API stand-in's server: its settings, routes, lifecycle, and the calls tests drive it by.

It speaks the REST paths and JSON that kubernetes-asyncio uses, with the semantics of
kubernetes-behaviour: graceful pod deletion (A1-A12), EndpointSlices kept by a controller
(D1-D10), list and watch (E1-E11); Secrets can be read by name and created. Faults are
injected on demand: answer with an error status, answer slowly, drop every watch, expire every
resource version, go away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from sidecar.drill.control_plane.controller import SliceController
from sidecar.drill.control_plane.crud import Crud
from sidecar.drill.control_plane.faults import Faults, middleware
from sidecar.drill.control_plane.listwatch import ListWatch, WatchSettings
from sidecar.drill.control_plane.responses import true_param
from sidecar.drill.control_plane.store import Store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from sidecar.drill.control_plane.store import Object


@dataclass
class ControlPlane:
    """The stand-in: start it, point a kubeconfig at it, drive it from Python.

    Its settings and `faults` may be changed while it serves; each request reads them anew.
    """

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
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.store = Store(history_limit=self.history_limit)
        self._controller = SliceController(self.store)
        self._crud = Crud(self.store, self._changed)
        self._listwatch = ListWatch(self.store)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        app = web.Application(middlewares=[middleware(lambda: self.faults, self.requests)])
        for resource in ("pods", "services", "events"):
            self._routes(app, f"/api/v1/namespaces/{{ns}}/{resource}", resource)
        self._routes(
            app, "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", "endpointslices"
        )
        # Secrets: get by name and create, as the injector's RBAC allows (no list, no watch).
        secrets = "/api/v1/namespaces/{ns}/secrets"
        app.router.add_get(secrets + "/{name}", self._crud.get("secrets"))
        app.router.add_post(secrets, self._crud.post("secrets"))
        app.router.add_get("/api/v1/pods", self._collection("pods"))
        status_path = "/api/v1/namespaces/{ns}/pods/{name}/status"
        app.router.add_route("PUT", status_path, self._crud.put_status)
        app.router.add_route("PATCH", status_path, self._crud.patch)
        app.router.add_get("/version", _version)
        # A client that hangs up cancels its request, as the API server's request context does;
        # a handler delayed by a fault then does not outlive the stand-in.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        """Go away: open watches end, later calls are refused."""
        self._controller.cancel()
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
        return self._crud.create(resource, obj)

    def delete_pod(self, namespace: str, name: str, options: Object | None = None) -> Object:
        """A pod DELETE (A1-A8); DeleteRefused or KeyError as the API would answer."""
        return self._crud.delete_pod(namespace, name, options)

    def patch_pod_status(self, namespace: str, name: str, patch: Object) -> Object:
        """Merge a status patch (the kubelet's status manager)."""
        return self._crud.patch_pod_status(namespace, name, patch)

    def set_ready(self, namespace: str, name: str, *, ready: bool) -> Object:
        """The pod's Ready condition, as the kubelet's readiness probe sets it (B3)."""
        pod = self.store.get("pods", namespace, name) or {}
        others = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] != "Ready"]
        ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
        return self.patch_pod_status(namespace, name, {"conditions": [*others, ready_condition]})

    def move_endpoint(self, namespace: str, service: str, pod_uid: str) -> None:
        """Repack one endpoint into a new slice: it sits in both for a moment (D8, D9)."""
        self._controller.move_endpoint(namespace, service, pod_uid)

    def expire_all(self) -> None:
        """Every resource version before now becomes too old to watch from (E5, E6)."""
        self.store.compact()

    def drop_watches(self) -> int:
        """Cut every open watch connection; returns how many."""
        return self.store.drop_watches()

    @property
    def expired_watches(self) -> int:
        """Watches answered with ERROR 410 (E5)."""
        return self._listwatch.expired_watches

    def events_for(self, namespace: str, name: str) -> list[Object]:
        """Events posted about one object, in the order they were posted."""
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

    # -- wiring ---------------------------------------------------------------------------

    def _changed(self, resource: str, namespace: str) -> None:
        self._controller.changed(
            resource,
            namespace,
            delay_seconds=self.controller_delay_seconds,
            max_per_slice=self.max_endpoints_per_slice,
        )

    def _collection(self, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def collection(request: web.Request) -> web.StreamResponse:
            settings = WatchSettings(
                bookmark_interval_seconds=self.bookmark_interval_seconds,
                min_request_timeout_seconds=self.min_request_timeout_seconds,
                watch_list=self.watch_list,
                continue_ttl_seconds=self.continue_ttl_seconds,
            )
            return await self._listwatch.serve(request, resource, settings, self.faults)

        return collection

    def _routes(self, app: web.Application, base: str, resource: str) -> None:
        app.router.add_get(base, self._collection(resource))
        app.router.add_post(base, self._crud.post(resource))
        app.router.add_get(base + "/{name}", self._crud.get(resource))
        app.router.add_delete(base + "/{name}", self._crud.delete(resource))
        app.router.add_route("PATCH", base + "/{name}", self._crud.patch)


async def _version(_: web.Request) -> web.Response:
    return web.json_response({"major": "1", "minor": "34", "gitVersion": "v1.34.0-stand-in"})
