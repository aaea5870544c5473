"""The deleted pod's recipes: each replica's processes, and the hooks each recipe gives it.

`coordinated` is the plain pod injected by `plan_patch` (sidecar/drill/injected.py): the
agent, its settings, environment and every hook come from the injected pod.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar.drill.injected import (
    PROXY,
    AgentLaunch,
    InjectedPod,
    PlainPod,
    inject,
    launch,
    plain_pod,
    template,
)
from sidecar.drill.kubelet import Container, Hook
from sidecar.drill.procs import (
    Proc,
    free_port,
    run_agent,
    start_app,
    start_envoy,
    start_pilot_agent,
    stopped_on_failure,
)
from sidecar.drill.registry import CONFIGURATORS, DISABLED, PROVIDERS

if TYPE_CHECKING:
    from pathlib import Path

    from sidecar.drill.cluster import Cluster
    from sidecar.drill.network import PodNet
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


@dataclass(frozen=True)
class Ports:
    """A pod's ports: its own namespace has Istio's and the injector's; loopback, free ones."""

    app: int
    envoy: int
    admin: int
    pilot: int
    agent: int

    @classmethod
    def of(cls, net: PodNet) -> Ports:
        """Fixed ports in a pod's own namespace; the kernel's choice on shared loopback."""
        if net.netns is not None:
            return cls(app=8080, envoy=15006, admin=15000, pilot=15020, agent=15120)
        return cls(
            free_port(net.ip), free_port(net.ip), free_port(), free_port(), free_port(net.ip)
        )


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
    net: PodNet
    ports: Ports


async def start_pod(workdir: Path, net: PodNet, params: DrillParams) -> Pod:
    """One replica: its app and Envoy at its IP (in its own namespace, if it has one), serving.

    In its namespace, the app listens on every address and Envoy reaches it over 127.0.0.1, as
    in a pod; on shared loopback both use the pod's own loopback address.
    """
    ports = Ports.of(net)
    own = net.netns is not None
    folder = workdir / net.name
    folder.mkdir()
    app = await start_app(
        folder,
        name=net.name,
        host="0.0.0.0" if own else net.ip,  # every address of the pod's own namespace
        port=ports.app,
        latency_ms=params.latency_ms,
        pod=net,
    )
    async with stopped_on_failure(app):
        envoy = await start_envoy(
            folder,
            name="envoy",
            host=net.ip,
            listen_port=ports.envoy,
            admin_port=ports.admin,
            app_host="127.0.0.1" if own else net.ip,
            app_port=ports.app,
            pod=net,
        )
    return Pod(net.name, net.ip, app, envoy, ports.app, ports.envoy, ports.admin, net, ports)


@dataclass
class PodRun:
    """The deleted pod as the kubelet runs it: its containers, with their preStop hooks."""

    containers: list[Container]
    #: Processes that belong to the pod but are no container the kubelet kills (pilot-agent).
    helpers: list[Proc] = field(default_factory=list)
    #: `coordinated`: the pod as injected, and how its agent was started.
    injected: InjectedPod | None = None
    agent: AgentLaunch | None = None


def registry_settings(pod: Pod, etcd_url: str) -> list[dict[str, Any]]:
    """The drill's etcd, where each replica registers, for the agent's settings."""
    # Announce writes Dubbo's `disabled` override; retire deletes the key and the override
    # and revokes the key's lease, then reads back.
    return [
        {
            "kind": "etcd",
            "name": "etcd",
            "endpoints": [etcd_url],
            "key": f"{PROVIDERS}{{pod.ip}}:{pod.envoy_port}",
            "mark_down_key": f"{CONFIGURATORS}{{pod.ip}}:{pod.envoy_port}",
            "mark_down_value": DISABLED,
        }
    ]


async def pod_containers(
    recipe: Recipe,
    pod: Pod,
    workdir: Path,
    cluster: Cluster,
    kubeconfig: Path,
    params: DrillParams,
    *,
    node_ip: str,
    etcd_url: str | None = None,
) -> PodRun:
    """The deleted pod's containers, with the recipe's preStop hooks."""
    if recipe == "coordinated":
        return await _coordinated(pod, workdir, cluster, kubeconfig, params, node_ip, etcd_url)
    hooks = {"app": Hook(), "proxy": Hook()}
    if recipe == "sleep-15":
        hooks = dict.fromkeys(hooks, Hook("sleep", seconds=params.sleep_seconds))
    elif recipe == "netstat-loop":
        # An exec hook runs in the container, so it sees the pod's sockets only.
        loop = pod.net.command([sys.executable, "-c", _NETSTAT_LOOP, str(pod.app_port)])
        hooks["proxy"] = Hook("exec", argv=tuple(loop))
    return PodRun(
        [
            Container("app", pod.app, hooks["app"]),
            Container("proxy", pod.envoy, hooks["proxy"], sidecar=params.native),
        ]
    )


async def _coordinated(
    pod: Pod,
    workdir: Path,
    cluster: Cluster,
    kubeconfig: Path,
    params: DrillParams,
    node_ip: str,
    etcd_url: str | None,
) -> PodRun:
    """The plain pod injected by plan_patch; the agent, env and hooks are the injected pod's."""
    folder = workdir / pod.name
    pilot = await start_pilot_agent(folder, port=pod.ports.pilot, pod=pod.net)
    async with stopped_on_failure(pilot):
        known = PlainPod(
            pod.name,
            cluster.uid,
            pod.ip,
            pod.app_port,
            pod.envoy_port,
            pod.admin_port,
            pod.ports.pilot,
            own_netns=pod.net.netns is not None,
        )
        plain = plain_pod(known, params)
        registries = registry_settings(pod, etcd_url) if etcd_url is not None else None
        drill_template = template(pod.ports.agent, params, registries)
        injected = inject(plain, drill_template, secrets.token_hex(16))
        agent = launch(injected, folder, ip=pod.ip, node_ip=node_ip, kubeconfig=kubeconfig)
        port = injected.template.port
        agent_proc = await run_agent(
            folder, agent.argv, agent.env, host=pod.ip, port=port, pod=pod.net
        )
    procs = {"app": pod.app, PROXY: pod.envoy, injected.template.container_name: agent_proc}
    # In the injected pod's order: native sidecars stop in reverse declaration order (C3).
    containers = [
        Container(name, procs[name], injected.hook(name, pod.ip), injected.is_sidecar(name))
        for name in injected.sidecar_order()
    ]
    return PodRun(containers, [pilot], injected, agent)
