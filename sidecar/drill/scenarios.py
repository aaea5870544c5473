"""The drill's scenarios: one pod deleted under load, with one shutdown recipe each.

Topology, all real processes. Service routing: load generator -> ingress Envoy (endpoints
from a file the data plane rewrites after the propagation delay) -> each pod's Envoy
sidecar -> its app. Registry routing: the load generator picks a replica from its copy of
the registry (real etcd, refreshed on a schedule) and sends straight to that pod's Envoy.
The deleted pod also runs the agent in `coordinated`, as plan_patch injected it. Each pod has
its own network namespace on a bridge where the drill can make one, or else its own loopback
IP (sidecar/drill/network.py). The API stand-in plays the API server, the kubelet simulator
plays the node; they, the ingress, etcd and the load stay in the host's namespace.
Optionally a pinned client sends straight to the deleted pod's Envoy on one keep-alive
connection, as a caller through a ClusterIP does, and moves only once told
`Connection: close`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp

from sidecar.drill import clients
from sidecar.drill.cluster import Cluster
from sidecar.drill.dataplane import EndpointsFile
from sidecar.drill.kubelet import Kubelet
from sidecar.drill.load import LoadRun
from sidecar.drill.network import Network, loopback
from sidecar.drill.procs import Proc, free_port, start_ingress
from sidecar.drill.recipes import Pod, PodRun, pod_containers, start_pod
from sidecar.drill.registry import RegistryRouting, Replica, key_of
from sidecar.drill.result import ScenarioResult

__all__ = ["ScenarioResult", "pod_names", "run_scenario"]

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sidecar.drill.params import DrillParams, Recipe, Routing


def pod_names(params: DrillParams) -> list[str]:
    """The replicas' names; the first is the one deleted."""
    return [f"web-{i + 1}" for i in range(params.replicas)]


async def run_scenario(
    workdir: Path,
    recipe: Recipe,
    params: DrillParams,
    routing: Routing = "service",
    network: Network | None = None,
) -> ScenarioResult:
    """Delete one pod under load with `recipe` in charge of its shutdown.

    `network` places the pods (its namespaces are the caller's to make and delete); without
    it they are loopback addresses.
    """
    loop = asyncio.get_running_loop()
    network = network or loopback(pod_names(params))
    # Pods in their own namespaces reach the API and etcd at the node's address.
    node_host = network.node_ip if network.mode == "netns" else "127.0.0.1"
    pods: list[Pod] = []
    procs: list[Proc] = []
    cluster = Cluster(controller_delay_seconds=params.controller_delay_seconds)
    registry = RegistryRouting(
        workdir, params.registry_refresh_seconds, params.lease_ttl_seconds, node_host
    )
    callers: clients.Clients | None = None
    try:
        for place in network.pods:
            pods.append(await start_pod(workdir, place, params))
            procs += [pods[-1].app, pods[-1].envoy]
        deleted = pods[0]
        kubeconfig = await cluster.start(
            deleted.ip, [p.ip for p in pods[1:]], workdir, params.grace_seconds, node_host
        )
        result = ScenarioResult(recipe, 0.0, LoadRun(params.rate_per_second, loop.time()))
        result.routing = routing
        result.network = network.description
        target, on_unready = (
            await _serve_through_ingress(workdir, pods, params, result, procs)
            if routing == "service"
            else await _serve_through_registry(registry, pods, result)
        )
        etcd_url = registry.server.url if routing == "registry" else None
        run = await pod_containers(
            recipe,
            deleted,
            workdir,
            cluster,
            kubeconfig,
            params,
            node_ip=network.node_ip,
            etcd_url=etcd_url,
        )
        procs += [c.proc for c in run.containers if c.name == "agent"] + run.helpers
        result.injected, result.agent_launch = run.injected, run.agent

        callers = clients.start(target, params, _pinned_to(result, deleted, pods[1]))
        await asyncio.sleep(params.lead_seconds)  # the load's steady state, part of the picture
        cluster.follow_slices(on_unready)
        result.t0 = loop.time()
        await cluster.delete_and_wait_for_kubelet()
        kubelet = Kubelet(run.containers, params.grace_seconds, node_ip=network.node_ip)
        result.killed = await kubelet.terminate()
        await cluster.pod_gone()
        result.pod_gone_at = loop.time()
        await _until_traffic_moved(result, registry, params)
        await asyncio.sleep(params.tail_seconds)  # where traffic went afterwards
        ends_at = result.load.started_at + params.duration_seconds
        await asyncio.sleep(max(0.0, ends_at - loop.time()))
        result.load, result.pinned, result.idle = await callers.finish()
        await _collect(result, run, cluster, registry, key_of(deleted.ip, deleted.envoy_port))
        return result
    finally:
        if callers is not None:
            await callers.abandon()
        # Every process is stopped and the stand-ins too, even if one of them fails to stop.
        stopped = await asyncio.gather(*(proc.stop() for proc in procs), return_exceptions=True)
        await registry.stop()
        await cluster.stop()
        if failed := [e for e in stopped if isinstance(e, BaseException)]:
            raise failed[0]


async def _collect(
    result: ScenarioResult, run: PodRun, cluster: Cluster, registry: RegistryRouting, key: str
) -> None:
    """The Events, the registry's moments and the agent's log, once the load stopped."""
    result.events = cluster.events()
    if result.routing == "registry":
        await _registry_moments(result, registry, key)
    agent = next((c.proc for c in run.containers if c.name == "agent"), None)
    if agent is not None:
        result.agent_log = [line for line in agent.json_lines() if "event" in line]


async def _serve_through_ingress(
    workdir: Path, pods: list[Pod], params: DrillParams, result: ScenarioResult, procs: list[Proc]
) -> tuple[str, Callable[[], None]]:
    """The ingress and its data plane; the URL to load, and what to do once the slice changes."""
    loop = asyncio.get_running_loop()
    deleted = pods[0]
    eds = EndpointsFile(workdir / "eds.json", [(p.ip, p.envoy_port) for p in pods])
    listen, admin = free_port(), free_port()
    procs.append(
        await start_ingress(workdir, listen_port=listen, admin_port=admin, eds_path=eds.path)
    )

    def unready() -> None:
        result.unready_at = loop.time()
        result.moved_at = result.unready_at + params.propagation_delay_seconds
        eds.remove_later((deleted.ip, deleted.envoy_port), params.propagation_delay_seconds)

    url = f"http://127.0.0.1:{listen}/"
    await _ready(url)
    return url, unready


async def _serve_through_registry(
    registry: RegistryRouting, pods: list[Pod], result: ScenarioResult
) -> tuple[Callable[[], str], Callable[[], None]]:
    """Start etcd and the registrars; return the replica picker and the slice's callback."""
    loop = asyncio.get_running_loop()
    replicas = [Replica(p.name, p.ip, p.envoy_port, p.app) for p in pods]
    await registry.start(replicas, watched=replicas[0])
    assert registry.consumer is not None  # noqa: S101 - start() made it

    def unready() -> None:
        result.unready_at = loop.time()  # noted for the picture: nobody routes by the slice here

    return registry.consumer.pick, unready


async def _until_traffic_moved(
    result: ScenarioResult, registry: RegistryRouting, params: DrillParams
) -> None:
    """Wait until callers no longer reach the deleted pod: the data plane, or the registry."""
    loop = asyncio.get_running_loop()
    if result.moved_at is not None and loop.time() < result.moved_at:
        await asyncio.sleep(result.moved_at - loop.time())  # until the data plane moved
    if result.routing == "registry":
        # Until the key is gone and the callers have read that: the lease may run its TTL.
        wait = params.lease_ttl_seconds + 2 * params.registry_refresh_seconds + 5
        await registry.gone_for_callers(result.t0, wait)


async def _registry_moments(result: ScenarioResult, registry: RegistryRouting, key: str) -> None:
    """What the watch and the callers' reads saw of the deleted pod's key after the DELETE."""
    assert registry.log is not None  # noqa: S101 - start() made it
    assert registry.consumer is not None  # noqa: S101 - start() made it
    result.marked_down_at = registry.log.marked_down_at(result.t0)
    result.removed_at = registry.log.removed_at(result.t0)
    result.callers_left_at = registry.consumer.left_at(key, result.t0)
    result.key_present_at_end = await registry.present(key)


def _pinned_to(result: ScenarioResult, deleted: Pod, other: Pod) -> Callable[[], str]:
    """Where a pinned client's new connection to the Service's address lands.

    The deleted pod until the data plane has applied its removal, then another replica.
    """
    loop = asyncio.get_running_loop()

    def resolve() -> str:
        moved = result.moved_at is not None and loop.time() >= result.moved_at
        pod = other if moved else deleted
        return f"http://{pod.ip}:{pod.envoy_port}/"

    return resolve


async def _ready(url: str) -> None:
    """Return once the ingress routes (it reads its EDS file shortly after starting)."""
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as response:
                if response.status == 200:
                    return
