"""Real namespaces, links and routes (as root): the host's routes kept, each run's names its own.

Every link a test makes is deleted in its `finally`; the drill's own go with `teardown`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from sidecar.drill import iproute, netnames, subnets
from sidecar.drill.iproute import NetworkError
from sidecar.drill.netnames import (
    PREFIX,
    clean_dead_owners,
    leftovers,
    owner,
    owner_id,
    teardown,
)
from sidecar.drill.network import NetworkPlan, netns_unavailable
from sidecar.drill.subnets import DRILL_RANGE, InUse, free_subnet

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    netns_unavailable() is not None, reason=f"needs network namespaces: {netns_unavailable()}"
)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _routes_of(dev: str) -> list[str]:
    return [r["dst"] for r in json.loads(_ip("-4", "-j", "route", "show", "dev", dev))]


def _addresses_of(dev: str) -> list[ipaddress.IPv4Interface]:
    (link,) = json.loads(_ip("-4", "-j", "addr", "show", "dev", dev))
    return [ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in link["addr_info"]]


@pytest.fixture
def host_link() -> Iterator[str]:
    """A bridge that stands for the host's own interface (no drill name), deleted afterwards."""
    name = f"tsthost{secrets.token_hex(3)}"
    _ip("link", "add", name, "type", "bridge")
    try:
        _ip("link", "set", name, "up")
        yield name
    finally:
        _ip("link", "del", name)


async def test_a_host_route_in_the_range_is_neither_shadowed_nor_removed(host_link: str) -> None:
    # A routed range with no local address here (a VPN's, a fake-IP TUN's): it was replaced.
    _ip("route", "add", "198.18.0.0/16", "dev", host_link)
    async with NetworkPlan("netns").pods(["web-1"]) as made:
        subnet = ipaddress.IPv4Interface(f"{made.node_ip}/24").network
        assert subnet.subnet_of(DRILL_RANGE)
        assert not subnet.overlaps(ipaddress.IPv4Network("198.18.0.0/16"))
    assert _routes_of(host_link) == ["198.18.0.0/16"]
    assert leftovers(owner()) == []


async def test_a_host_address_with_a_wide_prefix_keeps_its_range(host_link: str) -> None:
    _ip("addr", "add", "198.18.0.1/16", "dev", host_link)
    async with NetworkPlan("netns").pods(["web-1"]) as made:
        assert made.node_ip.startswith("198.19.")
    assert _routes_of(host_link) == ["198.18.0.0/16"]


async def test_no_free_subnet_falls_back_to_loopback_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = [InUse(DRILL_RANGE, "tun0", "route 198.18.0.0/15 dev tun0")]
    monkeypatch.setattr(subnets, "addresses_and_routes", lambda: full)
    plan = NetworkPlan("auto")
    async with plan.pods(["web-1"]) as made:
        assert made.mode == "loopback"
        assert made.description == (
            "loopback (netns setup failed: no /24 of 198.18.0.0/15 is free here "
            "(in use: route 198.18.0.0/15 dev tun0))"
        )
    assert leftovers(owner()) == []  # the bridge made before the search is gone
    with pytest.raises(NetworkError, match=r"no /24 of 198\.18\.0\.0/15 is free"):
        async with NetworkPlan("netns").pods(["web-1"]):
            pass


async def test_two_runs_that_find_the_same_subnet_free_claim_different_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tags = [await asyncio.to_thread(netnames.new_scenario_tag) for _ in range(2)]
    bridges = [f"{tag}b" for tag in tags]
    try:
        for bridge in bridges:
            _ip("link", "add", bridge, "type", "bridge")
            _ip("link", "set", bridge, "up")
        # Both looked before either claimed: the second's first look is the stale one.
        stale = await asyncio.to_thread(subnets.addresses_and_routes)
        start = free_subnet(stale, 0)
        first = await subnets.claim_subnet(bridges[0], start)
        looks: list[int] = []
        real = subnets.addresses_and_routes

        def stale_once() -> list[InUse]:
            looks.append(1)
            return stale if len(looks) == 1 else real()

        monkeypatch.setattr(subnets, "addresses_and_routes", stale_once)
        second = await subnets.claim_subnet(bridges[1], start)
        assert len(looks) == 3  # stale, then why the route was refused, then the next free one
        assert first != second
        assert _routes_of(bridges[0]) == [str(first)]
        assert _routes_of(bridges[1]) == [str(second)]
        assert all(a.network == second for a in _addresses_of(bridges[1]))
    finally:
        for tag in tags:
            assert teardown(tag) == []
    assert leftovers(owner()) == []


_HOLDER = """
import socket, sys
lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
lock.bind("\\0scd-" + sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


async def test_cleanup_spares_a_run_alive_in_another_pid_namespace_and_takes_a_dead_ones() -> None:
    # The other run is pid 1 of its own PID namespace, as in a container on the host's network.
    dead_or_alive = owner_id(1, secrets.randbelow(36**2))
    bridge = f"{PREFIX}{dead_or_alive}00b"
    holder = await asyncio.create_subprocess_exec(
        *["unshare", "--pid", "--fork", "--kill-child"],
        *[sys.executable, "-c", _HOLDER, dead_or_alive],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        _ip("link", "add", bridge, "type", "bridge")
        await asyncio.to_thread(clean_dead_owners)
        assert bridge in leftovers(dead_or_alive)
        assert holder.stdin is not None
        holder.stdin.close()
        assert await asyncio.wait_for(holder.wait(), 10) == 0
        assert await asyncio.to_thread(clean_dead_owners) == []
        assert leftovers(dead_or_alive) == []
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        teardown(f"{PREFIX}{dead_or_alive}")


async def test_this_runs_own_names_are_never_taken_for_a_dead_runs() -> None:
    async with NetworkPlan("netns").pods(["web-1"]):
        mine = leftovers(owner())
        assert len(mine) == 3  # bridge, veth, namespace
        await asyncio.to_thread(clean_dead_owners)
        assert leftovers(owner()) == mine


async def test_teardown_ends_when_ip_hangs_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = await asyncio.to_thread(netnames.new_scenario_tag)
    _ip("link", "add", f"{tag}b", "type", "bridge")
    hang = tmp_path / "ip"
    hang.write_text("#!/bin/sh\nexec sleep 30\n", encoding="utf-8")
    hang.chmod(0o755)
    with monkeypatch.context() as patched:
        patched.setattr(iproute, "ip_binary", lambda: str(hang))
        patched.setattr(iproute, "IP_TIMEOUT_SECONDS", 0.2)
        assert await asyncio.to_thread(teardown, tag) == [f"link {tag}b"]
    assert await asyncio.to_thread(teardown, tag) == []
    assert leftovers(owner()) == []
