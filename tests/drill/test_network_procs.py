"""A pod half started never leaves a process behind (it would keep its namespace alive)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import pytest

from sidecar.drill import iproute, procs, recipes, subnets
from sidecar.drill.iproute import NetworkError
from sidecar.drill.netnames import leftovers, owner
from sidecar.drill.network import NetworkPlan, netns_unavailable
from sidecar.drill.params import DrillParams

if TYPE_CHECKING:
    from pathlib import Path

    from sidecar.drill.procs import Proc

NEEDS_NETNS = pytest.mark.skipif(
    netns_unavailable() is not None, reason=f"needs network namespaces: {netns_unavailable()}"
)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[Proc]:
    """Every process the drill starts from here on."""
    started: list[Proc] = []
    spawn = procs.spawn

    async def recording(*args: Any, **kwargs: Any) -> Proc:
        started.append(await spawn(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(procs, "spawn", recording)
    return started


@NEEDS_NETNS
async def test_an_envoy_that_fails_after_the_app_started_leaves_no_app_in_the_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[Proc]
) -> None:
    async def envoy_fails(*_args: object, **_kwargs: object) -> Proc:
        raise RuntimeError("envoy did not start")

    monkeypatch.setattr(recipes, "start_envoy", envoy_fails)
    async with NetworkPlan("netns").pods(["web-1"]) as made:
        (pod,) = made.pods
        assert pod.netns is not None
        with pytest.raises(RuntimeError, match="envoy did not start"):
            await recipes.start_pod(tmp_path, pod, DrillParams())
        (app,) = spawned
        assert app.process.returncode is not None
        inside = await asyncio.to_thread(iproute.ip_blocking, "netns", "pids", pod.netns)
        assert inside == ""
    assert leftovers(owner()) == []


async def test_an_agent_that_never_serves_is_stopped_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[Proc]
) -> None:
    async def never_serves(*_args: object, **_kwargs: object) -> None:
        raise TimeoutError

    monkeypatch.setattr(procs, "wait_for_port", never_serves)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(TimeoutError):
        await procs.run_agent(tmp_path, sleeper, {}, host="127.0.0.1", port=9)
    (agent,) = spawned
    assert agent.process.returncode is not None


async def test_an_app_start_cancelled_while_waiting_stops_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[Proc]
) -> None:
    waiting = asyncio.Event()

    async def waits_forever(*_args: object, **_kwargs: object) -> None:
        waiting.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(procs, "wait_for_port", waits_forever)
    port = procs.free_port()
    starting = asyncio.create_task(
        procs.start_app(tmp_path, name="web-1", host="127.0.0.1", port=port, latency_ms=(1, 2))
    )
    await asyncio.wait_for(waiting.wait(), 10)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    (app,) = spawned
    assert app.process.returncode is not None


async def test_an_ip_that_hangs_is_a_clear_error_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = tmp_path / "ip"
    hang.write_text("#!/bin/sh\nexec sleep 30\n", encoding="utf-8")
    hang.chmod(0o755)
    monkeypatch.setattr(iproute, "ip_binary", lambda: str(hang))
    monkeypatch.setattr(iproute, "IP_TIMEOUT_SECONDS", 0.2)
    with pytest.raises(NetworkError, match=r"^ip link add x type bridge: no answer within 0\.2 s$"):
        await iproute.ip("link", "add", "x", "type", "bridge")
    with pytest.raises(NetworkError, match=r"^ip -4 -j addr show: no answer within 0\.2 s$"):
        await asyncio.to_thread(subnets.addresses_and_routes)


async def test_an_ip_that_fails_is_an_error_with_its_command_and_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fails = tmp_path / "ip"
    fails.write_text("#!/bin/sh\necho 'RTNETLINK answers: File exists' >&2\nexit 2\n", "utf-8")
    fails.chmod(0o755)
    monkeypatch.setattr(iproute, "ip_binary", lambda: str(fails))
    expected = r"^ip route add 198\.18\.3\.0/24: RTNETLINK answers: File exists \(exit 2\)$"
    with pytest.raises(NetworkError, match=expected):
        await iproute.ip("route", "add", "198.18.3.0/24")
