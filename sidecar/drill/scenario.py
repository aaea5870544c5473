"""One pod deleted under load with real processes: app, Envoy sidecar, agent, a kubelet stand-in.

The pod is deleted through the control-plane stand-in's API. The load balancer in front
stands for the data plane: it keeps sending to the pod until its EndpointSlice shows it not
ready and the propagation delay has passed, then sends to another replica. A pinned client
stands for a caller that reached the pod through a ClusterIP: it keeps its keep-alive
connection and keeps sending on it until the server says `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

from sidecar.drill.cluster import Cluster
from sidecar.drill.kubelet import Container, Hook, Kubelet
from sidecar.drill.procs import Proc, free_port, spawn, start_app, start_envoy, wait_for_port
from sidecar.settings import TOKEN_HEADER

if TYPE_CHECKING:
    from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Params:
    """The scenario's knobs."""

    grace_seconds: float = 20.0
    #: How long the EndpointSlice controller takes to mark the deleted pod not ready.
    controller_delay_seconds: float = 0.5
    propagation_delay_seconds: float = 1.0
    latency_ms: tuple[int, int] = (100, 300)
    workers: int = 8
    pinned_interval_seconds: float = 0.05
    quiet_window_seconds: float = 1.0
    agent_gets_sigterm_at_start: bool = True


@dataclass
class RequestRecord:
    """One request and how it ended."""

    client: str
    target: str
    started: float
    ended: float
    status: int | None
    error: str | None
    #: The server asked to close the connection after this response (a drain).
    closed: bool = False


@dataclass
class Outcome:
    """What happened, on the scenario's loop clock."""

    t0: float
    flip_at: float | None = None
    #: When the pod's EndpointSlice showed it not ready.
    unready_at: float | None = None
    #: (type, reason) of the Kubernetes Events posted on the pod.
    events: list[tuple[str, str]] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    hook_returned: dict[str, float] = field(default_factory=dict)
    hook_errors: dict[str, str] = field(default_factory=dict)
    exited: dict[str, float] = field(default_factory=dict)
    agent_log: list[dict[str, Any]] = field(default_factory=list)

    def failures(self) -> list[RequestRecord]:
        """Requests that did not end in HTTP 200."""
        return [r for r in self.requests if r.status != 200]

    def to_pod(self) -> list[RequestRecord]:
        """Requests that went to the deleted pod."""
        return [r for r in self.requests if r.target == "pod"]


class Router:
    """The data plane: the pod until the propagation delay has passed, then another replica."""

    def __init__(self, pod_url: str, other_url: str) -> None:
        self.pod_url = pod_url
        self.other_url = other_url
        self.flipped = False

    def flip(self) -> None:
        """The data plane has applied the pod's removal."""
        self.flipped = True

    def pick(self) -> tuple[str, str]:
        """(name, url) of where a new request goes now."""
        return ("other", self.other_url) if self.flipped else ("pod", self.pod_url)


async def _request(
    session: aiohttp.ClientSession, client: str, target: str, url: str, out: list[RequestRecord]
) -> bool:
    """Send one request; True if the server asked to close the connection."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with session.get(url) as response:
            await response.read()
            closed = response.headers.get("Connection", "").lower() == "close"
            out.append(
                RequestRecord(client, target, started, loop.time(), response.status, None, closed)
            )
            return closed
    except (aiohttp.ClientError, TimeoutError) as e:
        out.append(RequestRecord(client, target, started, loop.time(), None, type(e).__name__))
        return True


async def _worker(name: str, router: Router, stop: asyncio.Event, out: list[RequestRecord]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            target, url = router.pick()
            await _request(session, name, target, url, out)


async def _pinned(
    router: Router, stop: asyncio.Event, interval: float, out: list[RequestRecord]
) -> None:
    """A client on one keep-alive connection to the pod; it re-resolves only when told to close."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        target, url = "pod", router.pod_url
        while not stop.is_set():
            if await _request(session, "pinned", target, url, out):
                target, url = router.pick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def agent_settings(
    params: Params,
    *,
    ports: tuple[int, int, int, int],
    kubeconfig: Path,
    pod_uid: str,
) -> dict[str, Any]:
    """The agent's settings file for this pod."""
    agent_port, app_port, envoy_port, admin_port = ports
    return {
        "containers": [
            {"name": "app", "role": "app", "ports": [app_port]},
            {"name": "proxy", "role": "proxy", "ports": [envoy_port]},
        ],
        "server": {"port": agent_port, "host": HOST},
        "budget": {"grace_seconds": params.grace_seconds},
        "phases": {
            "unroute_fallback_delay_seconds": 0.5,
            "quiet_window_seconds": params.quiet_window_seconds,
            "quiesce_min_seconds": 0.5,
        },
        "traffic": {"sample_interval_seconds": 0.1},
        "envoy": {"admin_url": f"http://127.0.0.1:{admin_port}"},
        "pod": {"name": "web-1", "namespace": "shop", "uid": pod_uid, "ips": [HOST]},
        "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout_seconds": 2.0},
    }


async def start_agent(
    workdir: Path, settings_path: Path, token: str, port: int, *, host: str = HOST
) -> Proc:
    """The agent as its own process, serving once this returns."""
    env = {"SHUTDOWN_COORDINATOR_TOKEN": token, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "sidecar", "agent", "-c", str(settings_path)]
    agent = await spawn("agent", [*argv, "--log-format", "json"], workdir, env)
    await wait_for_port(host, port)
    return agent


async def _terminate(
    outcome: Outcome, procs: dict[str, Proc], agent_port: int, token: str, params: Params
) -> None:
    """The kubelet's part: every container's hook aims at the agent (reference B, C)."""
    agent_url = f"http://{HOST}:{agent_port}/prestop"
    token_header = ((TOKEN_HEADER, token),)
    kubelet = Kubelet(
        [
            Container(name, proc, Hook("http", f"{agent_url}/{name}", token_header))
            for name, proc in procs.items()
        ],
        grace_seconds=params.grace_seconds,
    )
    for name, killed in (await kubelet.terminate()).items():
        outcome.hook_returned[name] = killed.hook_ended or killed.sigterm_at or outcome.t0
        if killed.hook_error:
            outcome.hook_errors[name] = killed.hook_error
        if killed.exited_at is not None:
            outcome.exited[name] = killed.exited_at


async def run(workdir: Path, params: Params) -> Outcome:
    """Delete one pod under load and record everything."""
    loop = asyncio.get_running_loop()
    app_port, envoy_port, admin_port, agent_port, other_port = (free_port() for _ in range(5))
    token = secrets.token_hex(16)
    cluster = Cluster(params.controller_delay_seconds)
    procs: list[Proc] = []
    stop = asyncio.Event()
    load: list[asyncio.Task[None]] = []
    try:
        kubeconfig = await cluster.start(HOST, ["127.0.0.2"], workdir, int(params.grace_seconds))
        settings_path = workdir / "agent.yaml"
        settings = agent_settings(
            params,
            ports=(agent_port, app_port, envoy_port, admin_port),
            kubeconfig=kubeconfig,
            pod_uid=cluster.uid,
        )
        settings_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        app = await start_app(
            workdir, name="app", host=HOST, port=app_port, latency_ms=params.latency_ms
        )
        other = await start_app(
            workdir, name="other", host=HOST, port=other_port, latency_ms=params.latency_ms
        )
        procs += [app, other]
        envoy = await start_envoy(
            workdir,
            name="envoy",
            host=HOST,
            listen_port=envoy_port,
            admin_port=admin_port,
            app_port=app_port,
        )
        procs.append(envoy)
        agent = await start_agent(workdir, settings_path, token, agent_port)
        procs.append(agent)

        router = Router(f"http://{HOST}:{envoy_port}/", f"http://{HOST}:{other_port}/")
        outcome = Outcome(t0=0.0)
        load = [
            asyncio.create_task(_worker(f"w{i}", router, stop, outcome.requests))
            for i in range(params.workers)
        ]
        load.append(
            asyncio.create_task(
                _pinned(router, stop, params.pinned_interval_seconds, outcome.requests)
            )
        )
        await asyncio.sleep(1.0)  # steady load before the deletion, so there is traffic to protect

        def unready() -> None:
            # The data plane applies the EndpointSlice change after its propagation delay.
            outcome.unready_at = loop.time()
            outcome.flip_at = outcome.unready_at + params.propagation_delay_seconds
            loop.call_at(outcome.flip_at, router.flip)

        cluster.follow_slices(unready)
        # The deletion through the API; once the kubelet sees it: hooks in parallel, and (as a
        # classic container) the agent's own SIGTERM.
        outcome.t0 = loop.time()
        await cluster.delete_and_wait_for_kubelet()
        if params.agent_gets_sigterm_at_start:
            agent.signal(signal.SIGTERM)
        await _terminate(outcome, {"app": app, "proxy": envoy}, agent_port, token, params)
        await asyncio.sleep(0.5)  # a little load after the pod is gone, to show nothing breaks
        stop.set()
        await asyncio.gather(*load)
        with contextlib.suppress(TimeoutError):
            await agent.exited(params.grace_seconds)
        await cluster.pod_gone()
        outcome.agent_log = agent.json_lines()
        outcome.events = cluster.events()
        return outcome
    finally:
        stop.set()
        for task in load:
            task.cancel()
        for proc in procs:
            await proc.stop()
        await cluster.stop()
