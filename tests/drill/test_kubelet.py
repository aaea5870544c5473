"""The kubelet simulator pins kubernetes-behaviour B and C points, with real processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecar.drill.kubelet import Container, Hook, Kubelet
from sidecar.drill.procs import Proc, free_port

#: A container that exits on SIGTERM after `delay` seconds, or ignores it when told to.
CONTAINER = """
import signal, sys, time
delay, ignore = float(sys.argv[1]), sys.argv[2] == "ignore"
def on_term(*_):
    if not ignore:
        time.sleep(delay)
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


class HookServer:
    """The pod's side of httpGet hooks: records each request's arrival and headers."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.peers: dict[str, str] = {}
        self.hang = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.arrived[name] = asyncio.get_running_loop().time()
        self.headers[name] = dict(request.headers)
        self.peers[name] = request.remote or ""
        if name.startswith("hang"):
            await self.hang.wait()
        status = 500 if name.startswith("fail") else 200
        return web.Response(status=status, text="answered")


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[HookServer, str]]:
    server = HookServer()
    app = web.Application()
    app.router.add_get("/prestop/{name}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server, f"http://127.0.0.1:{port}/prestop"
    server.hang.set()
    await runner.cleanup()


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Proc] = []

    async def start(name: str, *, delay: float = 0.0, ignore: bool = False) -> Proc:
        argv = [sys.executable, "-c", CONTAINER, str(delay), "ignore" if ignore else "exit"]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        proc = Proc(name, process, tmp_path / f"{name}.log")
        started.append(proc)
        assert process.stdout is not None
        # Its SIGTERM handler is in place once it says so.
        assert await asyncio.wait_for(process.stdout.readline(), 10) == b"ready\n"
        return proc

    yield start
    for proc in started:
        await proc.stop()


def http(url: str, **headers: str) -> Hook:
    return Hook("http", url=url, headers=tuple(headers.items()))


async def test_b5_b10_b11_hooks_start_in_parallel_with_the_kubelets_headers_status_ignored(
    hooks: tuple[HookServer, str], procs: Any
) -> None:
    server, base = hooks
    kubelet = Kubelet(
        [
            Container("app", await procs("app"), http(f"{base}/fail-app", **{"X-Token": "t"})),
            Container("proxy", await procs("proxy"), http(f"{base}/proxy")),
        ],
        grace_seconds=10,
    )
    killed = await kubelet.terminate()
    assert abs(server.arrived["fail-app"] - server.arrived["proxy"]) < 0.2
    assert server.headers["fail-app"]["User-Agent"] == "kube-lifecycle/1.34"
    assert server.headers["fail-app"]["Accept"] == "*/*"
    assert server.headers["fail-app"]["X-Token"] == "t"
    # A 500 is a success to the kubelet: no event, SIGTERM as soon as it answered.
    assert killed["app"].hook_error is None
    assert [e[2] for e in kubelet.events].count("FailedPreStopHook") == 0
    assert killed["app"].sigterm_at is not None
    assert killed["app"].hook_ended is not None
    assert killed["app"].sigterm_at - killed["app"].hook_ended < 0.1


async def test_b9_hooks_come_from_the_node_address_when_it_is_given(
    hooks: tuple[HookServer, str], procs: Any
) -> None:
    server, base = hooks
    kubelet = Kubelet(
        [Container("app", await procs("app"), http(f"{base}/app"))],
        grace_seconds=10,
        node_ip="127.0.0.2",
    )
    await kubelet.terminate()
    assert server.peers["app"] == "127.0.0.2"


async def test_b8_b15_a_refused_hook_is_failed_prestop_hook_and_sigterm_comes_at_once(
    procs: Any,
) -> None:
    kubelet = Kubelet(
        [Container("app", await procs("app"), http(f"http://127.0.0.1:{free_port()}/x"))],
        grace_seconds=10,
    )
    killed = await kubelet.terminate()
    assert (killed["app"].hook_error or "").startswith("ClientConnectorError: ")
    assert ("Warning", "FailedPreStopHook", "app") in [e[1:] for e in kubelet.events]
    assert killed["app"].sigterm_at is not None
    assert killed["app"].sigterm_at - (killed["app"].hook_started or 0) < 0.5


async def test_b4_b7_an_overrunning_hook_is_not_cancelled_and_sigkill_follows_two_seconds_later(
    hooks: tuple[HookServer, str], procs: Any
) -> None:
    _, base = hooks
    kubelet = Kubelet(
        [Container("app", await procs("app", ignore=True), http(f"{base}/hang-app"))],
        grace_seconds=1,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    killed = await kubelet.terminate()
    record = killed["app"]
    assert record.sigterm_at is not None
    assert record.sigkill_at is not None
    assert 0.9 <= record.sigterm_at - started < 1.5
    assert 1.9 <= record.sigkill_at - record.sigterm_at < 2.5
    # The hook was still open when SIGTERM went out: the kubelet did not wait for it.
    assert record.hook_ended is None or record.hook_ended > record.sigterm_at


async def test_b17_a_sleep_hook_delays_sigterm_by_its_seconds(procs: Any) -> None:
    kubelet = Kubelet(
        [Container("app", await procs("app"), Hook("sleep", seconds=1.0))], grace_seconds=10
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    killed = await kubelet.terminate()
    assert killed["app"].sigterm_at is not None
    assert 1.0 <= killed["app"].sigterm_at - started < 1.3


async def test_c3_a_native_sidecar_gets_sigterm_only_after_the_main_container_exited(
    procs: Any,
) -> None:
    kubelet = Kubelet(
        [
            Container("app", await procs("app", delay=1.0), Hook("sleep", seconds=0.2)),
            Container("proxy", await procs("proxy"), sidecar=True),
        ],
        grace_seconds=10,
    )
    killed = await kubelet.terminate()
    assert killed["app"].exited_at is not None
    assert killed["proxy"].sigterm_at is not None
    assert killed["proxy"].sigterm_at >= killed["app"].exited_at
    assert killed["app"].sigkill_at is None


async def test_b4a_every_container_gets_a_killing_event(procs: Any) -> None:
    kubelet = Kubelet(
        [Container("a", await procs("a")), Container("b", await procs("b"))], grace_seconds=5
    )
    await kubelet.terminate()
    assert sorted(e[3] for e in kubelet.events if e[2] == "Killing") == ["a", "b"]
