"""A pod in the API stand-in with the KubeApi its agent would use; shared by the kube tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from sidecar.adapters.kube import KubeApi
from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from sidecar.model.rotation import pod_key
from sidecar.settings import KubernetesSettings, PodIdentity
from sidecar.shutdown.confirm import Confirmation, confirm
from sidecar.shutdown.unroute import unroute

#: How long the stand-in's EndpointSlice controller takes to act (D10 batch period).
CONTROLLER_DELAY_SECONDS = 0.4
FALLBACK_SECONDS = 0.5


class Pod:
    """One pod in the stand-in, with the adapter the agent in it would use."""

    def __init__(
        self,
        cp: ControlPlane,
        tmp: Path,
        ips: tuple[str, ...],
        inactivity_seconds: float = 1.0,
        **kw: Any,
    ) -> None:
        self.cp = cp
        self.doc = cp.create("pods", pod_object("web-1", ips, **kw))
        self.identity = PodIdentity("web-1", NAMESPACE, self.doc["metadata"]["uid"], ips)
        settings = KubernetesSettings(
            enabled=True,
            kubeconfig=str(cp.write_kubeconfig(tmp / "kubeconfig")),
            request_timeout_seconds=0.5,
            watch_inactivity_seconds=inactivity_seconds,
        )
        self.api = KubeApi(settings, self.identity)

    async def confirm(self, policy: Literal["deletion", "restart"]) -> Confirmation:
        deadline = asyncio.get_running_loop().time() + 5
        return await confirm(
            self.api, uid=self.identity.uid, when_unconfirmed=policy, deadline=deadline
        )

    def delete(self) -> None:
        self.deleted_at = asyncio.get_running_loop().time()
        self.cp.delete_pod(NAMESPACE, "web-1")

    async def unroute(self, seconds: float = 5.0) -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await unroute(
            self.api,
            pod_key(self.identity.uid, self.identity.ips),
            deadline=started + seconds,
            fallback_delay_seconds=FALLBACK_SECONDS,
        )
        return result, loop.time() - started


def slow_deletion(
    cp: ControlPlane, make_pod: Any, *, controller_seconds: float, **kw: Any
) -> tuple[Pod, asyncio.Task[tuple[Any, float]]]:
    """A pod in one Service, deleted while unroute runs; the controller takes its time."""
    cp.create("services", service_object("web"))
    pod = make_pod(**kw)
    cp.controller_delay_seconds = controller_seconds
    task = asyncio.create_task(pod.unroute())
    pod.delete()
    return pod, task
