"""Where the drill's pods live: each in its own network namespace on a bridge, or on loopback.

As root with iproute2 each pod gets a network namespace, as a CNI makes it: its own `lo`, and
`eth0`, one end of a veth pair whose other end is a port of a bridge in the host namespace.
The bridge is the node: 198.18.K.1/24 in the benchmarking range 198.18.0.0/15 (RFC 2544),
K picked per run so parallel runs never share a subnet. The pods are .10, .11, ...; the app,
its Envoy and the agent run inside the pod's namespace (`ip netns exec`) and share its
loopback, as a pod's containers do. The bridge has a second address, .2, the source of every
connection from the host side that has no address of its own: it stands for the ingress's
own pod IP, since the agent never counts the node's IP (HOST_IP) as traffic and only the
kubelet's hook calls come from there.

Names carry the process id, so parallel runs do not collide; everything is deleted when a
scenario ends, at exit, and (by the next run) when its owner died without doing it.
Without root or `ip`, the pods are loopback addresses (127.0.0.10, ...), told apart by port.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from sidecar.drill.params import NetworkMode

#: Every name the drill gives a namespace or a link starts so (then the owner's pid, base 36).
PREFIX = "scd"
#: Loopback mode: the node's address, where the kubelet's hooks come from (HOST_IP).
LOOPBACK_NODE_IP = "127.0.0.2"
#: The subnets the drill may use: 198.18.0.0/15, one /24 per run.
_SUBNETS = 512
_CLONE_NEWNET = 0x40000000
#: Where `ip netns add` mounts each namespace.
_NETNS_DIR = Path("/run/netns")
_NAME = re.compile(rf"^{PREFIX}([0-9a-z]+)x")


class NetworkError(RuntimeError):
    """The pods' network could not be made (an `ip` command failed, or netns is not possible)."""


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
        return [_ip_binary(), "netns", "exec", self.netns, *argv]


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

    requested: NetworkMode
    mode: Literal["netns", "loopback"] = "loopback"
    reason: str = ""
    _subnet: int = field(default=-1, repr=False)
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
                made = await self._make(names)
            except NetworkError as e:
                if self.requested == "netns":
                    raise
                self.mode, self.reason = "loopback", f"netns setup failed: {e}"
            else:
                try:
                    yield made
                finally:
                    await asyncio.to_thread(teardown, self._tag())
                return
        yield loopback(names, self.reason)

    def _tag(self) -> str:
        return f"{PREFIX}{_base36(os.getpid())}x{_base36(self._count)}"

    async def _make(self, names: Sequence[str]) -> Network:
        if self._subnet < 0:
            self._subnet = await asyncio.to_thread(_free_subnet)
            _register_exit_cleanup()
        self._count += 1
        tag = self._tag()
        base = _subnet_base(self._subnet)
        node, client = f"{base}.1", f"{base}.2"
        bridge = f"{tag}b"
        pods = [PodNet(name, f"{base}.{10 + i}", f"{tag}-{name}") for i, name in enumerate(names)]
        try:
            await _ip("link", "add", bridge, "type", "bridge")
            await _ip("addr", "add", f"{node}/24", "dev", bridge)
            await _ip("addr", "add", f"{client}/24", "dev", bridge)
            await _ip("link", "set", bridge, "up")
            # The host side's connections to pods leave from the client address, not the node's.
            subnet = f"{base}.0/24"
            await _ip("route", "replace", subnet, "dev", bridge, "scope", "link", "src", client)
            for index, pod in enumerate(pods):
                assert pod.netns is not None  # noqa: S101 - made with one just above
                veth = f"{tag}p{index}"
                await _ip("netns", "add", pod.netns)
                await _ip("-n", pod.netns, "link", "set", "lo", "up")
                await _ip(
                    "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns
                )
                await _ip("link", "set", veth, "master", bridge, "up")
                await _ip("-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
                await _ip("-n", pod.netns, "link", "set", "eth0", "up")
                await _ip("-n", pod.netns, "route", "add", "default", "via", node)
        except BaseException:
            await asyncio.to_thread(teardown, tag)
            raise
        description = f"netns ({subnet}: node {node}, ingress and clients {client})"
        return Network("netns", node, pods, description)


def loopback(names: Sequence[str], reason: str = "") -> Network:
    """Pods as loopback addresses in the host's namespace, told apart by port."""
    pods = [PodNet(name, f"127.0.0.{10 + i}") for i, name in enumerate(names)]
    description = f"loopback ({reason})" if reason else "loopback"
    return Network("loopback", LOOPBACK_NODE_IP, pods, description)


def netns_unavailable() -> str | None:
    """Why pods cannot get network namespaces here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if _ip_binary_or_none() is None:
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
        (_NETNS_DIR / netns).open("rb") as there,
        Path("/proc/thread-self/ns/net").open("rb") as home,
    ):
        if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
            raise NetworkError(f"setns into {netns}: {os.strerror(ctypes.get_errno())}")
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail
                raise NetworkError(f"setns home: {os.strerror(ctypes.get_errno())}")


def leftovers(owner_pid: int | None = None) -> list[str]:
    """Namespaces and links the drill made and did not delete (of one process, or of any)."""
    names = _netns_names() + _link_names()
    found = [name for name in names if _NAME.match(name)]
    if owner_pid is not None:
        own = f"{PREFIX}{_base36(owner_pid)}x"
        found = [name for name in found if name.startswith(own)]
    return found


def teardown(tag: str) -> None:
    """Delete every namespace and link whose name starts with `tag` (blocking, never raises)."""
    ip = _ip_binary_or_none()
    if ip is None:
        return
    for name in _netns_names():
        if name.startswith(tag):
            # The drill's own names, listed just above: no outside input.
            subprocess.run([ip, "netns", "del", name], capture_output=True, check=False)  # noqa: S603
    # A namespace's veth end goes with it, and its peer; the bridge is left.
    for name in _link_names():
        if name.startswith(tag):
            subprocess.run([ip, "link", "del", name], capture_output=True, check=False)  # noqa: S603


def clean_dead_owners() -> None:
    """Delete what runs that have died left behind (their pid is gone)."""
    for name in leftovers():
        match = _NAME.match(name)
        if match is None:
            continue
        pid = int(match.group(1), 36)
        if not _alive(pid):
            teardown(f"{PREFIX}{match.group(1)}x")


_exit_cleanup_registered = False


def _register_exit_cleanup() -> None:
    global _exit_cleanup_registered  # noqa: PLW0603 - once per process
    if not _exit_cleanup_registered:
        _exit_cleanup_registered = True
        atexit.register(teardown, f"{PREFIX}{_base36(os.getpid())}x")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> int:
    """A /24 of 198.18.0.0/15 no interface here has an address in, starting from our pid's."""
    clean_dead_owners()
    show = [_ip_binary(), "-4", "-o", "addr", "show"]
    taken = subprocess.run(show, capture_output=True, text=True, check=True).stdout  # noqa: S603
    start = os.getpid() % _SUBNETS
    for step in range(_SUBNETS):
        index = (start + step) % _SUBNETS
        if f" {_subnet_base(index)}." not in taken:
            return index
    raise NetworkError("every /24 of 198.18.0.0/15 is in use")


def _subnet_base(index: int) -> str:
    return f"198.{18 + index // 256}.{index % 256}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _ip_binary_or_none() -> str | None:
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if Path(p).exists()), None
    )


def _ip_binary() -> str:
    binary = _ip_binary_or_none()
    if binary is None:
        raise NetworkError("no ip command (iproute2)")
    return binary


def _netns_names() -> list[str]:
    try:
        return sorted(p.name for p in _NETNS_DIR.iterdir())
    except OSError:
        return []


def _link_names() -> list[str]:
    try:
        return sorted(p.name for p in Path("/sys/class/net").iterdir())
    except OSError:
        return []


async def _ip(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        _ip_binary(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        text = err.decode(errors="replace").strip()[:300]
        raise NetworkError(f"ip {' '.join(args)}: {text} (exit {process.returncode})")
