"""The drill's cluster: the API stand-in holding the pod and its Service, seen over real HTTP.

The kubelet simulator learns of the deletion from a pod watch, and the data plane learns of
the endpoint turning not-ready from an EndpointSlice watch, as the real ones do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.objects import NAMESPACE, pod_object, service_object

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

POD = "web-1"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"


async def watch_events(
    session: aiohttp.ClientSession, path: str, **params: str
) -> AsyncIterator[dict[str, Any]]:
    """One watch, event by event (a JSON document per line, kubernetes-behaviour E2)."""
    async with session.get(path, params={"watch": "1", **params}) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.strip():
                yield json.loads(line)


@dataclass
class Cluster:
    """One deleted pod in a Service, and the moments the control plane acted."""

    controller_delay_seconds: float
    cp: ControlPlane = field(init=False, default_factory=ControlPlane)
    uid: str = ""
    _session: aiohttp.ClientSession | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(
        self,
        pod_ip: str,
        other_ips: Sequence[str],
        workdir: Path,
        grace_seconds: int,
        host: str = "127.0.0.1",
    ) -> Path:
        """Serve the API on `host` with the pod and other replicas in one Service.

        Returns a kubeconfig. Pods in their own network namespaces reach the API at the node's
        address, so `host` is that then.
        """
        # Creating the objects is immediate; the deletion then takes the controller a while.
        await self.cp.start(host)
        self.cp.create("services", service_object("web"))
        pod = pod_object(POD, (pod_ip,), grace_seconds=grace_seconds)
        self.uid = self.cp.create("pods", pod)["metadata"]["uid"]
        for index, ip in enumerate(other_ips, start=2):
            self.cp.create("pods", pod_object(f"web-{index}", (ip,), grace_seconds=grace_seconds))
        self.cp.controller_delay_seconds = self.controller_delay_seconds
        self._session = aiohttp.ClientSession(self.cp.url)
        return self.cp.write_kubeconfig(workdir / "kubeconfig")

    def follow_slices(self, on_unready: Callable[[], None]) -> None:
        """Call `on_unready` once, when a slice first shows the pod not ready (the data plane)."""
        self._tasks.append(asyncio.create_task(self._follow(on_unready), name="data-plane"))

    async def _follow(self, on_unready: Callable[[], None]) -> None:
        assert self._session is not None  # noqa: S101 - start() came first
        async for event in watch_events(self._session, SLICES, timeoutSeconds="300"):
            endpoints = event["object"].get("endpoints") or []
            ours = [e for e in endpoints if e.get("targetRef", {}).get("uid") == self.uid]
            if any(not e["conditions"]["ready"] for e in ours):
                on_unready()
                return

    async def delete_and_wait_for_kubelet(self) -> None:
        """`kubectl delete pod`, then return when the kubelet's pod watch saw it (A3, H1)."""
        assert self._session is not None  # noqa: S101 - start() came first
        seen = asyncio.Event()

        async def kubelet() -> None:
            assert self._session is not None  # noqa: S101 - start() came first
            async for event in watch_events(
                self._session, PODS, fieldSelector=f"metadata.name={POD}", timeoutSeconds="300"
            ):
                if event["object"]["metadata"].get("deletionTimestamp"):
                    seen.set()
                    return

        # A watch opened after the delete still sees it: it starts with the pod as it is (E3).
        task = asyncio.create_task(kubelet(), name="kubelet-watch")
        async with self._session.delete(f"{PODS}/{POD}", json={}) as response:
            response.raise_for_status()
        await asyncio.wait_for(seen.wait(), 10)
        await task

    async def pod_gone(self) -> None:
        """The kubelet's last steps: terminal phase (A11), then the final delete (A10)."""
        assert self._session is not None  # noqa: S101 - start() came first
        status = {"status": {"phase": "Succeeded"}}
        async with self._session.patch(f"{PODS}/{POD}/status", json=status) as response:
            response.raise_for_status()
        final = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        async with self._session.delete(f"{PODS}/{POD}", json=final) as response:
            response.raise_for_status()

    def events(self) -> list[tuple[str, str]]:
        """(type, reason) of the Events posted on the pod, in order."""
        return [(e["type"], e["reason"]) for e in self.cp.events_for(NAMESPACE, POD)]

    async def stop(self) -> None:
        """Stop watching and serving."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self.cp.stop()
