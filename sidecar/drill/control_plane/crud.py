"""Create, read, update and delete as the API server does them, from Python and over HTTP.

Writes get the API's defaults (A1), a pod DELETE follows `pod_deletion.decide` (A1-A8), and
every write of a pod or Service is reported to `on_change` (the EndpointSlice controller).
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.drill.control_plane.pod_deletion import DeleteRefused, decide
from sidecar.drill.control_plane.responses import KINDS, json_body, status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sidecar.drill.control_plane.store import Object, Store


#: What this module serves beyond the listed kinds: Secrets, get and create only (the injector's).
_KINDS = {**KINDS, "secrets": ("v1", "Secret")}


class Crud:
    """Object writes and the HTTP handlers that make them."""

    def __init__(self, store: Store, on_change: Callable[[str, str], None]) -> None:
        self._store = store
        self._on_change = on_change

    # -- from Python (the drill's kubelet, the tests) -------------------------------------

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
        if resource == "secrets":  # stringData is write-only: merged into data, base64
            data = obj.setdefault("data", {})
            for key, text in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(text).encode()).decode()
            obj.setdefault("type", "Opaque")
        apiversion, kind = _KINDS[resource]
        obj.update(apiVersion=apiversion, kind=kind)
        created = self._store.create(resource, obj)
        self._on_change(resource, created["metadata"]["namespace"])
        return created

    def delete_pod(self, namespace: str, name: str, options: Object | None = None) -> Object:
        """A pod DELETE (A1-A8); DeleteRefused or KeyError as the API would answer."""
        pod = self._store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(name)
        decision = decide(pod, options or {}, None, time.time())
        if decision.action == "unchanged":
            return pod
        result = self._store.update("pods", decision.pod)
        if decision.action == "remove":
            result = self._store.remove("pods", namespace, name)
        self._on_change("pods", namespace)
        return result

    def patch_pod_status(self, namespace: str, name: str, patch: Object) -> Object:
        """Merge a status patch (the kubelet's status manager)."""
        pod = self._store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(name)
        pod["status"] = merge(pod.get("status", {}), patch)
        updated = self._store.update("pods", pod)
        self._on_change("pods", namespace)
        return updated

    # -- over HTTP ------------------------------------------------------------------------

    def get(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """GET one object."""

        async def get(request: web.Request) -> web.Response:
            ns, name = request.match_info["ns"], request.match_info["name"]
            obj = self._store.get(resource, ns, name)
            if obj is None:
                return status(404, "NotFound", f'{resource} "{name}" not found')
            return web.json_response(obj)

        return get

    def post(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """POST to a collection: name or generateName, 409 if it exists."""

        async def post(request: web.Request) -> web.Response:
            body = await json_body(request)
            if body is None or not isinstance(body.get("metadata"), dict):
                return status(400, "BadRequest", "expected a JSON object with metadata")
            meta = body["metadata"]
            meta["namespace"] = request.match_info["ns"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{random.randrange(16**5):05x}"
            if not meta.get("name"):
                return status(422, "Invalid", "metadata.name: Required value: name is required")
            if self._store.get(resource, meta["namespace"], meta["name"]) is not None:
                return status(409, "AlreadyExists", f'{resource} "{meta["name"]}" already exists')
            return web.json_response(self.create(resource, body), status=201)

        return post

    def delete(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """DELETE one object; a pod's deletion is graceful (A4)."""

        async def delete(request: web.Request) -> web.Response:
            ns, name = request.match_info["ns"], request.match_info["name"]
            options = await json_body(request) or {}
            if "gracePeriodSeconds" in request.query and "gracePeriodSeconds" not in options:
                options["gracePeriodSeconds"] = request.query["gracePeriodSeconds"]
            if self._store.get(resource, ns, name) is None:
                return status(404, "NotFound", f'{resource} "{name}" not found')  # A8
            if resource != "pods":
                removed = self._store.remove(resource, ns, name)
                self._on_change(resource, ns)
                return web.json_response(removed)
            try:
                return web.json_response(self.delete_pod(ns, name, options))  # A4
            except DeleteRefused as e:
                return status(e.code, e.reason, e.message)

        return delete

    async def patch(self, request: web.Request) -> web.Response:
        """Merge patch (RFC 7386) of an object or a pod's status."""
        ns, name = request.match_info["ns"], request.match_info["name"]
        resource = _resource_of(request.path)
        patch = await json_body(request)
        current = self._store.get(resource, ns, name)
        if current is None:
            return status(404, "NotFound", f'{resource} "{name}" not found')
        if patch is None:
            return status(400, "BadRequest", "expected a JSON merge patch")
        if request.path.endswith("/status"):
            return web.json_response(self.patch_pod_status(ns, name, patch.get("status", {})))
        updated = self._store.update(resource, merge(current, patch))
        self._on_change(resource, ns)
        return web.json_response(updated)

    async def put_status(self, request: web.Request) -> web.Response:
        """PUT a pod's status (only the status is taken from the body)."""
        body = await json_body(request)
        if body is None:
            return status(400, "BadRequest", "expected a Pod")
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self._store.get("pods", ns, name) is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        return web.json_response(self.patch_pod_status(ns, name, body.get("status", {})))


def _resource_of(path: str) -> str:
    parts = path.split("/")
    return parts[parts.index("namespaces") + 2]


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result
