"""Where the drill's pods live: each in its own network namespace on a bridge, or on loopback.

As root with iproute2 each pod gets a network namespace, as a CNI makes it: its own `lo`, and
`eth0`, one end of a veth pair whose other end is a port of a bridge in the host namespace.
The bridge is the node: 198.18.K.1/24, K a /24 of the benchmarking range that overlaps no
address or route of the host (see `subnets`). The pods are .10, .11, ...; the app, its Envoy
and the agent run inside the pod's namespace (`ip netns exec`) and share its loopback, as a
pod's containers do. The bridge has a second address, .2, the source of every connection
from the host side that has no address of its own: it stands for the ingress's own pod IP,
since the agent never counts the node's IP (HOST_IP) as traffic and only the kubelet's hook
calls come from there.

This module makes them and hands out the result (`NetworkPlan`, `Network`, `PodNet`); the
names, their owners and their deletion are `netnames`'s, the `ip` command is `iproute`'s.
Everything a scenario made is deleted when it ends, and at exit.
Without root or `ip`, the pods are loopback addresses (127.0.0.10, ...), told apart by port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sidecar.drill.iproute import NETNS_DIR, NetworkError, ip, ip_binary, ip_binary_or_none
from sidecar.drill.netnames import PREFIX, new_scenario_tag, teardown, veth_name
from sidecar.drill.subnets import claim_subnet

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence


#: Loopback mode: the node's address, where the kubelet's hooks come from (HOST_IP).
LOOPBACK_NODE_IP = "127.0.0.2"
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class PodNet:
    """One pod's place on the network."""

    name: str
    ip: str
    #: Its network namespace; None on loopback (the host's namespace).
    netns: str | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the pod's namespace."""
        if self.netns is None:
            return list(argv)
        return [ip_binary(), "netns", "exec", self.netns, *argv]


@dataclass
class Network:
    """The pods of one scenario, the node's address, and what the header says of them."""

    mode: Literal["netns", "loopback"]
    node_ip: str
    pods: list[PodNet]
    description: str


@dataclass
class NetworkPlan:
    """Which mode a drill run uses, decided once; `auto` falls back to loopback, saying why."""

    #: What `--network` asked for (params.NetworkMode: auto, netns or loopback); not imported
    #: from there, since params reaches this module to check the choice.
    requested: str
    mode: Literal["netns", "loopback"] = "loopback"
    reason: str = ""
    _count: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        why_not = netns_unavailable()
        if self.requested == "loopback":
            self.mode, self.reason = "loopback", "asked"
        elif why_not is None:
            self.mode = "netns"
        elif self.requested == "netns":
            raise NetworkError(f"--network netns: not possible here ({why_not})")
        else:
            self.mode, self.reason = "loopback", why_not

    @contextlib.asynccontextmanager
    async def pods(self, names: Sequence[str]) -> AsyncIterator[Network]:
        """The pods' network for one scenario, torn down when it ends, however it ends."""
        if self.mode == "netns":
            try:
                made = await _make(names)
            except NetworkError as e:
                if self.requested == "netns":
                    raise
                self.mode, self.reason = "loopback", f"netns setup failed: {e}"
            else:
                try:
                    yield made
                finally:
                    await asyncio.to_thread(teardown, made.tag)
                return
        yield loopback(names, self.reason)


@dataclass
class _Made(Network):
    #: The prefix of every name made for this scenario.
    tag: str = ""


async def _make(names: Sequence[str]) -> _Made:
    """The bridge, a free /24 claimed for it, and each pod's namespace and veth on it."""
    tag = await asyncio.to_thread(new_scenario_tag)
    bridge = f"{tag}b"
    veths = [veth_name(tag, index) for index in range(len(names))]
    try:
        await ip("link", "add", bridge, "type", "bridge")
        await ip("link", "set", bridge, "up")
        subnet = await claim_subnet(bridge, int(tag[len(PREFIX) :], 36))
        node, client = (str(subnet.network_address + host) for host in (1, 2))
        pods = [
            PodNet(name, str(subnet.network_address + 10 + i), f"{tag}-{name}")
            for i, name in enumerate(names)
        ]
        for veth, pod in zip(veths, pods, strict=True):
            assert pod.netns is not None  # noqa: S101 - made with one just above
            await ip("netns", "add", pod.netns)
            await ip("-n", pod.netns, "link", "set", "lo", "up")
            await ip(
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns
            )
            await ip("link", "set", veth, "master", bridge, "up")
            await ip("-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
            await ip("-n", pod.netns, "link", "set", "eth0", "up")
            await ip("-n", pod.netns, "route", "add", "default", "via", node)
    except BaseException:
        await asyncio.to_thread(teardown, tag)
        raise
    description = f"netns ({subnet}: node {node}, ingress and clients {client})"
    return _Made("netns", node, pods, description, tag)


def loopback(names: Sequence[str], reason: str = "") -> Network:
    """Pods as loopback addresses in the host's namespace, told apart by port."""
    pods = [PodNet(name, f"127.0.0.{10 + i}") for i, name in enumerate(names)]
    description = f"loopback ({reason})" if reason else "loopback"
    return Network("loopback", LOOPBACK_NODE_IP, pods, description)


def netns_unavailable() -> str | None:
    """Why pods cannot get network namespaces here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if ip_binary_or_none() is None:
        return "no ip command (iproute2)"
    if not Path("/proc/self/ns/net").exists():
        return "no network namespaces in this kernel"
    return None


def open_socket_in(netns: str | None, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket that lives in `netns` (it stays there, whoever uses it later).

    setns(2) moves only the calling thread, which is back home before this returns; nothing
    else runs on this thread in between.
    """
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    libc = ctypes.CDLL(None, use_errno=True)
    with (
        (NETNS_DIR / netns).open("rb") as there,
        Path("/proc/thread-self/ns/net").open("rb") as home,
    ):
        if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
            raise NetworkError(f"setns into {netns}: {os.strerror(ctypes.get_errno())}")
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail
                raise NetworkError(f"setns home: {os.strerror(ctypes.get_errno())}")
