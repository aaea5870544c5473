"""The stand-in's EndpointSlice controller at work: it rewrites a Service's slices after a change.

What the slices should hold is decided by `endpointslices.reconcile`; this module applies it
to the store, after the controller's delay (kubernetes-behaviour D10), one write per event.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from sidecar.drill.control_plane.endpointslices import SERVICE_LABEL, reconcile

if TYPE_CHECKING:
    from sidecar.drill.control_plane.store import Object, Store


class SliceController:
    """Keeps every Service's EndpointSlices in the store in step with its pods."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: set[asyncio.TimerHandle] = set()

    def changed(
        self, resource: str, namespace: str, *, delay_seconds: float, max_per_slice: int
    ) -> None:
        """A pod or Service changed: resync the namespace now or after `delay_seconds`."""
        if resource not in {"pods", "services"}:
            return
        if delay_seconds <= 0:
            self._sync(namespace, max_per_slice)
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay_seconds, self._sync, namespace, max_per_slice)
        self._pending.add(handle)

    def slices(self, namespace: str, service: str) -> list[Object]:
        """The Service's slices as stored."""
        return [
            s
            for s in self._store.items("endpointslices", namespace)
            if s["metadata"].get("labels", {}).get(SERVICE_LABEL) == service
        ]

    def move_endpoint(self, namespace: str, service: str, pod_uid: str) -> None:
        """Repack one endpoint into a new slice: it sits in both for a moment (D8, D9)."""
        source = next(
            s
            for s in self.slices(namespace, service)
            if any(e["targetRef"]["uid"] == pod_uid for e in s.get("endpoints") or [])
        )
        moved = [e for e in source["endpoints"] if e["targetRef"]["uid"] == pod_uid]
        fresh = json.loads(json.dumps(source))
        fresh["metadata"] = {
            k: v for k, v in source["metadata"].items() if k not in {"uid", "resourceVersion"}
        }
        fresh["metadata"]["name"] = f"{service}-moved{self._store.revision}"
        fresh["endpoints"] = moved
        self._store.create("endpointslices", fresh)
        source["endpoints"] = [e for e in source["endpoints"] if e["targetRef"]["uid"] != pod_uid]
        self._store.update("endpointslices", source)

    def cancel(self) -> None:
        """Forget the resyncs not yet made (the stand-in is going away)."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()

    def _sync(self, namespace: str, max_per_slice: int) -> None:
        self._pending = {h for h in self._pending if not h.cancelled()}
        pods = self._store.items("pods", namespace)
        for service in self._store.items("services", namespace):
            name = service["metadata"]["name"]
            for write in reconcile(
                service, pods, self.slices(namespace, name), max_per_slice=max_per_slice
            ):
                if write.verb == "create":
                    self._store.create("endpointslices", write.slice)
                elif write.verb == "update":
                    self._store.update("endpointslices", write.slice)
                else:
                    meta = write.slice["metadata"]
                    self._store.remove("endpointslices", namespace, meta["name"])
