"""Pods in their own network namespaces: made per scenario, torn down always, or loopback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sidecar.drill.cluster import Cluster
from sidecar.drill.iproute import NetworkError
from sidecar.drill.main import run_all
from sidecar.drill.netnames import leftovers, owner
from sidecar.drill.network import (
    LOOPBACK_NODE_IP,
    Network,
    NetworkPlan,
    netns_unavailable,
    open_socket_in,
)
from sidecar.drill.params import DrillParams

NEEDS_NETNS = pytest.mark.skipif(
    netns_unavailable() is not None, reason=f"needs network namespaces: {netns_unavailable()}"
)


async def _connect_from(netns: str, host: str, port: int) -> None:
    sock = open_socket_in(netns)
    sock.setblocking(False)  # noqa: FBT003 - the socket API's own
    with sock:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))


async def _look_around_then_fail(network: Network) -> None:
    assert network.mode == "netns"
    assert network.description.startswith("netns (198.1")
    made = leftovers(owner())
    names = sorted(p.netns for p in network.pods if p.netns)
    assert names == sorted(n for n in made if n.endswith(("web-1", "web-2")))
    first = network.pods[0]
    assert first.netns is not None
    assert first.ip.startswith(network.node_ip.rsplit(".", 1)[0] + ".")
    # `lo` is up in the pod.
    show = await asyncio.create_subprocess_exec(
        "ip", "-n", first.netns, "-o", "addr", "show", "dev", "lo", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await show.communicate()
    assert "inet 127.0.0.1/8" in out.decode()
    peer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.set_result(writer.get_extra_info("peername")[0])
        writer.close()

    # The pod's own 127.0.0.1 is not the host's; it reaches the node over its veth and bridge.
    server = await asyncio.start_server(accept, network.node_ip, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await _connect_from(first.netns, "127.0.0.1", port)
        await _connect_from(first.netns, network.node_ip, port)
        assert await asyncio.wait_for(peer, 5) == first.ip
    raise RuntimeError("the scenario failed")


@NEEDS_NETNS
async def test_each_pod_gets_a_namespace_with_lo_and_a_veth_and_all_goes_even_on_failure() -> None:
    plan = NetworkPlan("netns")
    with pytest.raises(RuntimeError, match="the scenario failed"):
        async with plan.pods(["web-1", "web-2"]) as network:
            await _look_around_then_fail(network)
    assert leftovers(owner()) == []


def test_without_root_auto_falls_back_to_loopback_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    plan = NetworkPlan("auto")
    assert (plan.mode, plan.reason) == ("loopback", "not root")
    with pytest.raises(NetworkError, match=r"--network netns: not possible here \(not root\)"):
        NetworkPlan("netns")


async def test_loopback_pods_are_loopback_addresses_in_the_host_namespace() -> None:
    async with NetworkPlan("loopback").pods(["web-1", "web-2"]) as network:
        assert [(p.ip, p.netns) for p in network.pods] == [
            ("127.0.0.10", None),
            ("127.0.0.11", None),
        ]
        assert network.node_ip == LOOPBACK_NODE_IP
        assert network.description == "loopback (asked)"
        assert network.pods[0].command(["true"]) == ["true"]


SMALL = DrillParams(
    rate_per_second=50, lead_seconds=1.0, tail_seconds=0.5, grace_seconds=30, network="netns"
)


@NEEDS_NETNS
@pytest.mark.envoy
async def test_coordinated_in_network_namespaces_loses_nothing_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    (result,) = await run_all(SMALL, ["coordinated"])
    assert result.network.startswith("netns (198.1")
    assert result.load.failures() == {}
    assert len(result.load.requests) > 50
    launched = result.agent_launch
    assert launched is not None
    # The agent ran in the pod with the node's address as HOST_IP, which is not loopback.
    node_ip = launched.env["HOST_IP"]
    assert node_ip.startswith("198.1")
    assert node_ip.endswith(".1")
    assert launched.env["POD_IPS"] == node_ip.rsplit(".", 1)[0] + ".10"
    summary = result.agent_summary
    assert summary is not None
    assert summary["released"]["app"]["reason"] == "turn"
    assert summary["phases"]["drain"]["outcome"] == "ok"
    # The release waited for the data plane: the ingress's traffic, from its own address, counted.
    assert result.moved_at is not None
    sigterm = result.killed["app"].sigterm_at
    assert sigterm is not None
    assert sigterm >= result.moved_at
    assert leftovers(owner()) == []


@NEEDS_NETNS
@pytest.mark.envoy
async def test_a_scenario_that_fails_in_netns_still_tears_its_namespaces_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def api_down(*_args: object, **_kwargs: object) -> Path:
        # The pods run by now, each in its namespace.
        seen.extend(leftovers(owner()))
        raise RuntimeError("the API stand-in did not start")

    monkeypatch.setattr(Cluster, "start", api_down)
    with pytest.raises(RuntimeError, match="the API stand-in did not start"):
        await run_all(SMALL, ["coordinated"])
    assert any(name.endswith("web-1") for name in seen)
    assert leftovers(owner()) == []
