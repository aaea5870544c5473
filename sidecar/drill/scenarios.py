"""The drill's scenarios: one pod deleted under load, with one shutdown recipe each.

Topology, all real processes: load generator -> ingress Envoy (endpoints from a file the data
plane rewrites after the propagation delay) -> each pod's Envoy sidecar -> its app; the
deleted pod also runs the agent in `coordinated`. Pods have their own loopback IPs. The
API stand-in plays the API server, the kubelet simulator plays the node. Optionally a pinned
client sends straight to the deleted pod's Envoy on one keep-alive connection, as a caller
through a ClusterIP does, and moves only once told `Connection: close`.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

from sidecar.drill.cluster import Cluster
from sidecar.drill.dataplane import EndpointsFile
from sidecar.drill.kubelet import Container, Hook, Killed, Kubelet
from sidecar.drill.load import LoadRun, generate, pinned
from sidecar.drill.procs import Proc, free_port, start_agent, start_app, start_envoy, start_ingress
from sidecar.settings import TOKEN_HEADER

if TYPE_CHECKING:
    from pathlib import Path

    from sidecar.drill.params import DrillParams, Recipe


#: The usual Istio script on the proxy container: wait while any other process listens.
_NETSTAT_LOOP = """
import sys, time
ports = {int(p) for p in sys.argv[1:]}
def listening():
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) in ports:
                    return True
    return False
while listening():
    time.sleep(1)
"""


@dataclass
class Pod:
    """One replica's processes."""

    name: str
    ip: str
    app: Proc
    envoy: Proc
    app_port: int
    envoy_port: int
    admin_port: int


@dataclass
class ScenarioResult:
    """What one scenario did, on the loop clock; `t0` is the DELETE."""

    recipe: Recipe
    t0: float
    load: LoadRun
    killed: dict[str, Killed] = field(default_factory=dict)
    unready_at: float | None = None
    moved_at: float | None = None
    pod_gone_at: float | None = None
    #: The pinned client's requests, when the drill ran one.
    pinned: LoadRun | None = None
    #: (type, reason) of the Kubernetes Events posted on the deleted pod, in order.
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The agent's JSON log lines (`coordinated` only).
    agent_log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agent_summary(self) -> dict[str, Any] | None:
        """The agent's `shutdown_finished` line, if it wrote one."""
        return next((line for line in self.agent_log if line["event"] == "shutdown_finished"), None)

    def row(self, grace_seconds: float) -> dict[str, Any]:
        """The scenario in the table's terms (seconds from the DELETE)."""
        app = self.killed.get("app")

        def since(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.t0, 2)

        gone = since(self.pod_gone_at)
        return {
            "scenario": self.recipe,
            **self.load.summary(),
            "app_sigterm_seconds": since(app.sigterm_at if app else None),
            "pod_gone_seconds": gone,
            "budget_left_seconds": None if gone is None else round(grace_seconds - gone, 2),
            "endpoint_unready_seconds": since(self.unready_at),
            "data_plane_moved_seconds": since(self.moved_at),
        }


async def _start_pod(workdir: Path, index: int, params: DrillParams) -> Pod:
    name, ip = f"web-{index + 1}", f"127.0.0.{index + 10}"
    app_port, envoy_port, admin_port = free_port(ip), free_port(ip), free_port()
    folder = workdir / name
    folder.mkdir()
    app = await start_app(folder, name=name, host=ip, port=app_port, latency_ms=params.latency_ms)
    envoy = await start_envoy(
        folder,
        name="envoy",
        host=ip,
        listen_port=envoy_port,
        admin_port=admin_port,
        app_port=app_port,
    )
    return Pod(name, ip, app, envoy, app_port, envoy_port, admin_port)


def agent_settings(
    pod: Pod, port: int, kubeconfig: Path, uid: str, params: DrillParams
) -> dict[str, Any]:
    """The agent's settings file for the deleted pod."""
    return {
        "containers": [
            {"name": "app", "ports": [pod.app_port]},
            {"name": "proxy", "role": "proxy", "ports": [pod.envoy_port]},
        ],
        "server": {"port": port, "host": pod.ip, "mode": "native" if params.native else "classic"},
        "budget": {"grace_seconds": params.grace_seconds},
        "phases": {
            "quiet_window_seconds": params.quiet_window_seconds,
            "quiesce_min_seconds": 0.5,
        },
        "traffic": {"sample_interval_seconds": 0.1},
        "envoy": {"admin_url": f"http://127.0.0.1:{pod.admin_port}"},
        "pod": {"name": pod.name, "namespace": "shop", "uid": uid, "ips": [pod.ip]},
        "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout_seconds": 2.0},
    }


async def _containers(
    recipe: Recipe, pod: Pod, workdir: Path, cluster: Cluster, kubeconfig: Path, params: DrillParams
) -> list[Container]:
    """The deleted pod's containers, with the recipe's preStop hooks."""
    hooks = {"app": Hook(), "proxy": Hook()}
    agent: Proc | None = None
    if recipe == "sleep-15":
        hooks = dict.fromkeys(hooks, Hook("sleep", seconds=params.sleep_seconds))
    elif recipe == "netstat-loop":
        hooks["proxy"] = Hook("exec", argv=(sys.executable, "-c", _NETSTAT_LOOP, str(pod.app_port)))
    elif recipe == "coordinated":
        token, port = secrets.token_hex(16), free_port(pod.ip)
        settings_path = workdir / pod.name / "agent.yaml"
        settings = agent_settings(pod, port, kubeconfig, cluster.uid, params)
        settings_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        agent = await start_agent(workdir / pod.name, settings_path, token, host=pod.ip, port=port)
        base, header = f"http://{pod.ip}:{port}/prestop", ((TOKEN_HEADER, token),)
        hooks = {name: Hook("http", f"{base}/{name}", header) for name in hooks}
    # Native sidecars in declaration order: the agent first, so it stops after the proxy (C3).
    containers = [Container("app", pod.app, hooks["app"])]
    if agent is not None:
        containers.append(Container("agent", agent, sidecar=params.native))
    containers.append(Container("proxy", pod.envoy, hooks["proxy"], sidecar=params.native))
    return containers


async def run_scenario(workdir: Path, recipe: Recipe, params: DrillParams) -> ScenarioResult:
    """Delete one pod under load with `recipe` in charge of its shutdown."""
    loop = asyncio.get_running_loop()
    pods: list[Pod] = []
    procs: list[Proc] = []
    cluster = Cluster(controller_delay_seconds=params.controller_delay_seconds)
    stop = asyncio.Event()
    try:
        pods = [await _start_pod(workdir, i, params) for i in range(params.replicas)]
        procs = [p for pod in pods for p in (pod.app, pod.envoy)]
        deleted = pods[0]
        kubeconfig = await cluster.start(
            deleted.ip, [p.ip for p in pods[1:]], workdir, params.grace_seconds
        )
        eds = EndpointsFile(workdir / "eds.json", [(p.ip, p.envoy_port) for p in pods])
        listen, admin = free_port(), free_port()
        procs.append(
            await start_ingress(workdir, listen_port=listen, admin_port=admin, eds_path=eds.path)
        )
        containers = await _containers(recipe, deleted, workdir, cluster, kubeconfig, params)
        procs += [c.proc for c in containers if c.name == "agent"]
        result = ScenarioResult(recipe, 0.0, LoadRun(params.rate_per_second, loop.time()))

        def unready() -> None:
            result.unready_at = loop.time()
            result.moved_at = result.unready_at + params.propagation_delay_seconds
            eds.remove_later((deleted.ip, deleted.envoy_port), params.propagation_delay_seconds)

        # Little's law: enough connections for every request in flight at the slowest latency.
        connections = max(64, math.ceil(params.rate_per_second * params.latency_ms[1] / 1000 * 2))
        load = asyncio.create_task(
            generate(
                f"http://127.0.0.1:{listen}/",
                rate_per_second=params.rate_per_second,
                stop=stop,
                connections=connections,
            )
        )
        await _ready(f"http://127.0.0.1:{listen}/")
        pinned_client = _pin(result, deleted, pods[1], params, stop)
        await asyncio.sleep(params.lead_seconds)  # the load's steady state, part of the picture
        cluster.follow_slices(unready)
        result.t0 = loop.time()
        await cluster.delete_and_wait_for_kubelet()
        result.killed = await Kubelet(containers, params.grace_seconds).terminate()
        await cluster.pod_gone()
        result.pod_gone_at = loop.time()
        if result.moved_at is not None and loop.time() < result.moved_at:
            await asyncio.sleep(result.moved_at - loop.time())  # until the data plane moved
        await asyncio.sleep(params.tail_seconds)  # where traffic went afterwards
        ends_at = result.load.started_at + params.duration_seconds
        await asyncio.sleep(max(0.0, ends_at - loop.time()))
        stop.set()
        result.load = await load
        if pinned_client is not None:
            result.pinned = await pinned_client
        result.events = cluster.events()
        agent = next((c.proc for c in containers if c.name == "agent"), None)
        if agent is not None:
            result.agent_log = [line for line in agent.json_lines() if "event" in line]
        return result
    finally:
        stop.set()
        for proc in procs:
            await proc.stop()
        await cluster.stop()


def _pin(
    result: ScenarioResult, deleted: Pod, other: Pod, params: DrillParams, stop: asyncio.Event
) -> asyncio.Task[LoadRun] | None:
    """Start the pinned client on the deleted pod, if the drill runs one."""
    if params.pinned_interval_seconds <= 0:
        return None
    loop = asyncio.get_running_loop()

    def resolve() -> str:
        # Where a new connection to the Service's address lands: the deleted pod until the
        # data plane has applied its removal, then another replica.
        moved = result.moved_at is not None and loop.time() >= result.moved_at
        pod = other if moved else deleted
        return f"http://{pod.ip}:{pod.envoy_port}/"

    every = params.pinned_interval_seconds
    return asyncio.create_task(pinned(resolve, interval_seconds=every, stop=stop), name="pinned")


async def _ready(url: str) -> None:
    """Return once the ingress routes (it reads its EDS file shortly after starting)."""
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as response:
                if response.status == 200:
                    return
