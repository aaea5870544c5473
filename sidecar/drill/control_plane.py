"""A Kubernetes API server stand-in for the drill and the tests: pods, EndpointSlices, events.

It speaks the REST paths and JSON that kubernetes-asyncio uses, with the semantics of
reference/kubernetes.md: graceful pod deletion (A1-A12), EndpointSlices kept by a controller
(D1-D10), list and watch (E1-E11). Faults are injected on demand: answer with an error
status, answer slowly, drop every watch, expire every resource version, go away.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.drill.apistore import Expired, Store, Watcher
from sidecar.drill.endpointslices import SERVICE_LABEL, reconcile
from sidecar.drill.pod_deletion import DeleteRefused, decide
from sidecar.drill.selectors import SelectorError, both, field_matcher, label_matcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

Object = dict[str, Any]

#: resource -> (apiVersion, kind) as served.
KINDS = {
    "pods": ("v1", "Pod"),
    "services": ("v1", "Service"),
    "events": ("v1", "Event"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
}


def invalid(field_name: str, message: str) -> web.Response:
    """A 422 Invalid about one field of the request's options."""
    return status(422, "Invalid", f"{field_name}: {message}")


def status(code: int, reason: str, message: str) -> web.Response:
    """An API error as the server sends it: a Status object."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class Refused(Exception):  # noqa: N818 - the request is refused with this answer
    """Raised while checking a request: answer with `response` instead."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


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

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        app = web.Application(middlewares=[self._middleware])
        for resource in ("pods", "services", "events"):
            self._routes(app, f"/api/v1/namespaces/{{ns}}/{resource}", resource)
        self._routes(
            app, "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", "endpointslices"
        )
        app.router.add_get("/api/v1/pods", self._collection("pods"))
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
            and (watch is None or _true(q.get("watch")) == watch)
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
        app.router.add_get(base, self._collection(resource))
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

    def _collection(self, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def collection(request: web.Request) -> web.StreamResponse:
            query = request.query
            try:
                matches = both(
                    label_matcher(query.get("labelSelector")),
                    field_matcher(resource, query.get("fieldSelector")),
                )
            except SelectorError as e:
                return status(400, "BadRequest", str(e))
            ns = request.match_info.get("ns", "")
            try:
                if _true(query.get("watch")):
                    return await self._watch(request, resource, ns, matches)
                return self._list(query, resource, ns, matches)
            except Refused as refused:
                return refused.response

        return collection

    def _list(
        self, query: Any, resource: str, ns: str, matches: Callable[[Object], bool]
    ) -> web.Response:
        """E1, E4: a list with the revision to watch from; limit and continue."""
        if query.get("sendInitialEvents"):
            raise Refused(invalid("sendInitialEvents", "Forbidden: forbidden for list"))
        rv, match = query.get("resourceVersion"), query.get("resourceVersionMatch")
        if match and not rv:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs resourceVersion"))
        if match == "Exact" and rv != str(self.store.revision):
            # The stand-in keeps only the newest state, so only the newest revision is exact.
            raise Refused(status(410, "Expired", f"too old resource version: {rv}"))
        items = [o for o in self.store.items(resource, ns or None) if matches(o)]
        revision, start = str(self.store.revision), 0
        if query.get("continue"):
            revision, start = self._continue_from(query["continue"])
        metadata: Object = {"resourceVersion": revision}
        limit = _number(query, "limit", 0)
        page = items[start : start + int(limit)] if limit else items[start:]
        if limit and start + limit < len(items):
            token = {"rv": revision, "start": start + int(limit), "at": time.time()}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - int(limit)
        for item in page:  # I2: items need not carry kind and apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        apiversion, kind = KINDS[resource]
        return web.json_response(
            {"kind": f"{kind}List", "apiVersion": apiversion, "metadata": metadata, "items": page}
        )

    def _continue_from(self, text: str) -> tuple[str, int]:
        try:
            token = json.loads(base64.urlsafe_b64decode(text))
            revision, start, issued = str(token["rv"]), int(token["start"]), float(token["at"])
        except (ValueError, KeyError, TypeError):
            raise Refused(status(400, "BadRequest", "continue: invalid continue token")) from None
        if time.time() - issued > self.continue_ttl_seconds:
            raise Refused(status(410, "Expired", "The provided continue parameter is too old"))
        return revision, start

    def _watch_options(self, query: Any) -> tuple[str, bool, bool, float]:
        """E3, E8, E10: (resourceVersion, initial events, bookmarks, lifetime), or Refused."""
        initial_events = _true(query.get("sendInitialEvents"))
        match = query.get("resourceVersionMatch")
        if initial_events and not self.watch_list:
            raise Refused(invalid("sendInitialEvents", "Forbidden: the WatchList feature is off"))
        if initial_events and match != "NotOlderThan":
            raise Refused(invalid("resourceVersionMatch", "Required value: NotOlderThan"))
        if match and not initial_events:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs sendInitialEvents"))
        rv = query.get("resourceVersion", "")
        if rv not in {"", "0"} and not rv.isdigit():
            raise Refused(status(400, "BadRequest", f"resourceVersion: invalid value {rv!r:.30}"))
        lifetime = _number(query, "timeoutSeconds", 0)
        if lifetime <= 0:  # E8
            lifetime = self.min_request_timeout_seconds * (1 + random.random())
        bookmarks = _true(query.get("allowWatchBookmarks"))
        return rv, initial_events, bookmarks, lifetime

    async def _watch(
        self, request: web.Request, resource: str, ns: str, matches: Callable[[Object], bool]
    ) -> web.StreamResponse:
        """E2-E10: a chunked stream of one JSON event per line."""
        rv, initial_events, bookmarks, lifetime = self._watch_options(request.query)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        apiversion, kind = KINDS[resource]
        replay_all = rv in {"", "0"} or initial_events
        since = self.store.revision if replay_all else int(rv)
        initial = [o for o in self.store.items(resource, ns or None) if matches(o)]
        try:
            watcher = self._open_watch(resource, ns, matches, None if replay_all else since)
        except Expired as e:  # E5: HTTP 200, one ERROR event, then the end
            self.expired_watches += 1
            error = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
            await _send(
                response, "ERROR", {**error, "message": str(e), "reason": "Expired", "code": 410}
            )
            return response
        try:
            for obj in initial if replay_all else ():  # E3: synthetic ADDED for what exists
                await _send(response, "ADDED", obj)
            if initial_events and bookmarks:  # E10
                mark = _mark((apiversion, kind), since)
                mark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                await _send(response, "BOOKMARK", mark)
            dropped = await self._stream(response, watcher, lifetime, bookmarks, (apiversion, kind))
        except ConnectionError:  # the client went away; aiohttp's reset error is one too
            return response
        finally:
            self.store.unwatch(watcher)
        if dropped and request.transport is not None:
            request.transport.abort()  # a dropped connection, not a clean end
        return response

    def _open_watch(
        self, resource: str, ns: str, matches: Callable[[Object], bool], since: int | None
    ) -> Watcher:
        """A watcher from `since` (None: from now); Expired for a revision out of history."""
        if since is not None and self.faults.expire_next_watches > 0:
            self.faults.expire_next_watches -= 1
            raise Expired(since, self.store.revision)
        return self.store.watch(
            resource, ns, matches, self.store.revision if since is None else since
        )

    async def _stream(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        lifetime_seconds: float,
        bookmarks: bool,
        kind: tuple[str, str],
    ) -> bool:
        """Send events until the timeout (clean end, E8) or a drop (returns True)."""
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + lifetime_seconds
        next_mark = loop.time() + self.bookmark_interval_seconds
        while True:
            now = loop.time()
            if now >= ends_at:
                if bookmarks:  # E7: one just before the deadline
                    await _send(response, "BOOKMARK", _mark(kind, self.store.revision))
                return False
            wait = min(ends_at, next_mark if bookmarks else ends_at) - now
            try:
                change = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and loop.time() >= next_mark:
                    await _send(response, "BOOKMARK", _mark(kind, self.store.revision))
                    next_mark = loop.time() + self.bookmark_interval_seconds
                continue
            if change is None:
                return True
            event = watcher.event_for(change)
            if event is not None:
                await _send(response, *event)


def _true(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (clients send "True")."""
    return value in {"1", "t", "T", "true", "TRUE", "True"}


def _number(query: Any, name: str, default: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise Refused(
            status(400, "BadRequest", f"{name}: expected a number, got {text!r:.20}")
        ) from None
    return value


def _mark(kind: tuple[str, str], revision: int) -> Object:
    return {"kind": kind[1], "apiVersion": kind[0], "metadata": {"resourceVersion": str(revision)}}


async def _send(response: web.StreamResponse, kind: str, obj: Object) -> None:
    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")


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
