"""The deleted pod's recipes: each replica's processes, and the hooks each recipe gives it.

`coordinated` also runs the agent, with settings written for the pod, the drill's API and,
under registry routing, the drill's etcd.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from sidecar.drill.kubelet import Container, Hook
from sidecar.drill.procs import Proc, free_port, start_agent, start_app, start_envoy
from sidecar.drill.registry import CONFIGURATORS, DISABLED, PROVIDERS
from sidecar.settings import TOKEN_HEADER

if TYPE_CHECKING:
    from pathlib import Path

    from sidecar.drill.cluster import Cluster
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


async def start_pod(workdir: Path, index: int, params: DrillParams) -> Pod:
    """Replica `index`: its app and Envoy on its own loopback IP, both serving."""
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
    pod: Pod,
    port: int,
    kubeconfig: Path,
    uid: str,
    params: DrillParams,
    etcd_url: str | None = None,
) -> dict[str, Any]:
    """The agent's settings file for the deleted pod (with the drill's etcd, if it routes by it)."""
    settings: dict[str, Any] = {
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
    if etcd_url is not None:
        # Announce writes Dubbo's `disabled` override; retire deletes the key and the override
        # and revokes the key's lease, then reads back.
        settings["registries"] = [
            {
                "kind": "etcd",
                "name": "etcd",
                "endpoints": [etcd_url],
                "key": f"{PROVIDERS}{{pod.ip}}:{pod.envoy_port}",
                "mark_down_key": f"{CONFIGURATORS}{{pod.ip}}:{pod.envoy_port}",
                "mark_down_value": DISABLED,
            }
        ]
    return settings


async def pod_containers(
    recipe: Recipe,
    pod: Pod,
    workdir: Path,
    cluster: Cluster,
    kubeconfig: Path,
    params: DrillParams,
    etcd_url: str | None = None,
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
        settings = agent_settings(pod, port, kubeconfig, cluster.uid, params, etcd_url)
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
