"""The agent SIGKILLed mid-shutdown, with real processes: what then happens to each container.

Pins docs/faults.md "The agent dies mid-shutdown" (kubernetes-behaviour B8, B11, B15, C3, C6):
every held hook fails at once with a transport error, the kubelet sends SIGTERM to the app and
the proxy straight away (in native mode the proxy once the app has exited), the agent stays
down, and the pod still ends inside its grace with no SIGKILL.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.kubelet import Container, Hook, Killed, Kubelet
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from sidecar.drill.procs import Proc, free_port, start_agent, start_app, start_envoy
from sidecar.settings import TOKEN_HEADER

pytestmark = pytest.mark.envoy

POD, POD_IP = "web-1", "127.0.0.41"
GRACE_SECONDS = 10
#: How soon after the kill each consequence must follow: no waiting on any timer.
AT_ONCE_SECONDS = 0.5
#: /status is the only view into the agent process; it is read this often until hooks are held.
STATUS_INTERVAL_SECONDS = 0.05
#: A held hook's request dies with the agent's socket: closed without an answer or reset
#: (Go's net/http: EOF, "connection reset by peer"). The simulator's aiohttp client then
#: retries the GET once (aiohttp >= 3.10 does so for idempotent methods, where the kubelet's
#: Go client does not on a fresh connection), and that retry is refused. Each is a transport
#: error, hence FailedPreStopHook (B8, B11, B15).
TRANSPORT_ERRORS = ("ServerDisconnectedError: ", "ClientOSError: ", "ClientConnectorError: ")


@dataclass
class DeletedPod:
    """The pod's three containers and what the test needs to reach them."""

    app: Proc
    envoy: Proc
    agent: Proc
    agent_url: str
    token: str
    uid: str
    cp: ControlPlane


@pytest.fixture
async def pod(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[DeletedPod]:
    native: bool = request.param
    cp = ControlPlane()
    procs: list[Proc] = []
    try:
        await cp.start()
        cp.create("services", service_object("web"))
        created = cp.create("pods", pod_object(POD, (POD_IP,), grace_seconds=GRACE_SECONDS))
        uid = created["metadata"]["uid"]
        # The pod's endpoint is in its slice now; from here on the controller is slow, so the
        # endpoint stays ready and the agent is still in unroute, holding both hooks, when it
        # is killed.
        cp.controller_delay_seconds = 600
        app_port, envoy_port, admin_port = free_port(POD_IP), free_port(POD_IP), free_port()
        app = await start_app(tmp_path, name="app", host=POD_IP, port=app_port, latency_ms=(1, 2))
        procs.append(app)
        envoy = await start_envoy(
            tmp_path,
            name="envoy",
            host=POD_IP,
            listen_port=envoy_port,
            admin_port=admin_port,
            app_port=app_port,
        )
        procs.append(envoy)
        token, port = secrets.token_hex(16), free_port(POD_IP)
        settings = {
            "containers": [
                {"name": "app", "ports": [app_port]},
                {"name": "proxy", "role": "proxy", "ports": [envoy_port]},
            ],
            "server": {"port": port, "host": POD_IP, "mode": "native" if native else "classic"},
            "budget": {"grace_seconds": GRACE_SECONDS},
            "traffic": {"sample_interval_seconds": 0.1},
            "envoy": {"admin_url": f"http://127.0.0.1:{admin_port}"},
            "pod": {"name": POD, "namespace": NAMESPACE, "uid": uid, "ips": [POD_IP]},
            "kubernetes": {
                "kubeconfig": str(cp.write_kubeconfig(tmp_path / "kubeconfig")),
                "request_timeout_seconds": 2.0,
            },
        }
        settings_path = tmp_path / "agent.yaml"
        settings_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        agent = await start_agent(tmp_path, settings_path, token, host=POD_IP, port=port)
        procs.append(agent)
        yield DeletedPod(app, envoy, agent, f"http://{POD_IP}:{port}", token, uid, cp)
    finally:
        for proc in procs:
            await proc.stop()
        await cp.stop()


def containers(pod: DeletedPod, *, native: bool) -> list[Container]:
    """As the drill declares them: the agent before the proxy, so it stops after it (C3)."""
    header = ((TOKEN_HEADER, pod.token),)
    return [
        Container("app", pod.app, Hook("http", f"{pod.agent_url}/prestop/app", header)),
        Container("agent", pod.agent, sidecar=native),
        Container(
            "proxy", pod.envoy, Hook("http", f"{pod.agent_url}/prestop/proxy", header), native
        ),
    ]


async def wait_both_hooks_held(url: str) -> dict[str, Any]:
    """The agent's /status once it holds both hooks and has confirmed the deletion.

    The agent has no way to push this, so its /status is read until then.
    """
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        while True:
            async with session.get(f"{url}/status") as response:
                status: dict[str, Any] = await response.json()
            if status["hooks"]["held"] == 2 and status["kind"] == "deletion":
                return status
            await asyncio.sleep(STATUS_INTERVAL_SECONDS)


async def refused(url: str) -> bool:
    """Whether a connection to the agent's address is refused (nobody listens)."""
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz"):
            return False
    except aiohttp.ClientConnectorError:
        return True


def after(record: Killed, moment: float, field: str) -> float:
    value = getattr(record, field)
    assert value is not None, f"{record.name}: no {field}"
    return float(value) - moment


@pytest.mark.parametrize(
    ("pod", "native"), [(False, False), (True, True)], indirect=["pod"], ids=["classic", "native"]
)
async def test_agent_killed_mid_shutdown_fails_held_hooks_and_sigterm_follows_at_once(
    pod: DeletedPod, native: bool
) -> None:
    loop = asyncio.get_running_loop()
    pod.cp.delete_pod(NAMESPACE, POD)
    t0 = loop.time()
    kubelet = Kubelet(containers(pod, native=native), GRACE_SECONDS)
    terminating = asyncio.create_task(kubelet.terminate(), name="kubelet")
    try:
        status = await wait_both_hooks_held(pod.agent_url)
        # Mid-shutdown: the flight waits for the endpoint, and nobody has been released yet.
        # (announce has nothing to do here, and its record may come last.)
        assert status["phase"] in {"unroute", "announce"}
        assert "quiesce" not in [p["phase"] for p in status["timeline"]]
        assert status["containers"]["app"]["state"] == "waiting"
        assert status["containers"]["proxy"]["state"] == "waiting"
        killed_at = loop.time()
        pod.agent.signal(signal.SIGKILL)
        async with asyncio.timeout(GRACE_SECONDS + 5):
            records = await terminating
    finally:
        terminating.cancel()
        await asyncio.gather(terminating, return_exceptions=True)
    app, proxy, agent = records["app"], records["proxy"], records["agent"]

    # Each held hook fails with a transport error as soon as the agent dies (B8, B11) ...
    for record in (app, proxy):
        assert (record.hook_error or "").startswith(TRANSPORT_ERRORS), record
        assert after(record, killed_at, "hook_ended") < AT_ONCE_SECONDS
    assert sorted(e[1:] for e in kubelet.events if e[2] == "FailedPreStopHook") == [
        ("Warning", "FailedPreStopHook", "app"),
        ("Warning", "FailedPreStopHook", "proxy"),
    ]
    # ... and the kubelet sends SIGTERM at once (B15): nothing waits for a turn any more.
    assert 0 <= after(app, killed_at, "sigterm_at") < AT_ONCE_SECONDS
    assert 0 <= after(proxy, killed_at, "sigterm_at") < AT_ONCE_SECONDS
    if native:
        # C3: the native proxy still waits for the app, which exits at once on SIGTERM.
        assert after(proxy, 0, "sigterm_at") >= after(app, 0, "exited_at")
    # The agent died of the SIGKILL and stays down (C6): the kubelet started nothing, the
    # address is refused after the pod's end, and the agent released nothing itself.
    assert pod.agent.process.returncode == -signal.SIGKILL
    assert 0 <= after(agent, killed_at, "exited_at") < AT_ONCE_SECONDS
    assert {e[2] for e in kubelet.events if e[3] == "agent"} == {"Killing"}
    assert await refused(pod.agent_url)
    logged = {line["event"] for line in pod.agent.json_lines() if "event" in line}
    assert "container_released" not in logged
    assert "shutdown_finished" not in logged
    # The pod still ends inside its grace: every container exited, none was SIGKILLed.
    for record in records.values():
        assert record.sigkill_at is None, record
        assert after(record, t0, "exited_at") < GRACE_SECONDS
    pod.cp.patch_pod_status(NAMESPACE, POD, {"phase": "Succeeded"})  # A11
    pod.cp.delete_pod(
        NAMESPACE, POD, {"gracePeriodSeconds": 0, "preconditions": {"uid": pod.uid}}
    )  # A10
    assert pod.cp.store.get("pods", NAMESPACE, POD) is None
