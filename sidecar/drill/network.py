"""Where the drill's pods live: each in its own network namespace on a bridge, or on loopback.

As root with iproute2 each pod gets a network namespace, as a CNI makes it: its own `lo`, and
`eth0`, one end of a veth pair whose other end is a port of a bridge in the host namespace.
The bridge is the node: 198.18.K.1/24 in the benchmarking range 198.18.0.0/15 (RFC 2544),
K a /24 that overlaps no address or route of the host (read from `ip -j`, never shadowed).
The pods are .10, .11, ...; the app, its Envoy and the agent run inside the pod's namespace
(`ip netns exec`) and share its loopback, as a pod's containers do. The bridge has a second
address, .2, the source of every connection from the host side that has no address of its
own: it stands for the ingress's own pod IP, since the agent never counts the node's IP
(HOST_IP) as traffic and only the kubelet's hook calls come from there.

Every name carries its owner: the process's id and a random token, fixed width. The owner
holds the abstract unix socket `@scd-<owner>` while it runs (abstract sockets belong to the
network namespace, so runs in other PID namespaces on the same network see it); whatever a
run whose socket nobody holds left behind is deleted by the next run. Everything else is
deleted when its scenario ends, and at exit.
Without root or `ip`, the pods are loopback addresses (127.0.0.10, ...), told apart by port.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import errno
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Sequence

    from sidecar.drill.params import NetworkMode

#: Every name the drill gives a namespace or a link starts so (then its owner, see `_NAME`).
PREFIX = "scd"
#: Loopback mode: the node's address, where the kubelet's hooks come from (HOST_IP).
LOOPBACK_NODE_IP = "127.0.0.2"
#: The range the drill may use, one /24 per scenario.
DRILL_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
_SUBNETS = 512
#: How long one `ip` command may take before it counts as failed.
IP_TIMEOUT_SECONDS = 10.0
_CLONE_NEWNET = 0x40000000
#: Where `ip netns add` mounts each namespace.
_NETNS_DIR = Path("/run/netns")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Base-36 digits of each part of a name: 36**5 is above any pid_max (2**22).
_PID_WIDTH, _TOKEN_WIDTH, _SCENARIO_WIDTH, _POD_WIDTH = 5, 2, 2, 2
#: PREFIX, owner (pid, token), scenario, then `b` (the bridge), `p` and the pod's index (its
#: veth: 15 characters, Linux's longest link name) or `-` and the pod's name (its namespace).
_NAME = re.compile(
    rf"^{PREFIX}(?P<owner>[0-9a-z]{{{_PID_WIDTH + _TOKEN_WIDTH}}})"
    rf"[0-9a-z]{{{_SCENARIO_WIDTH}}}(?:b|p[0-9a-z]{{{_POD_WIDTH}}}|-.+)$"
)


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
    tag = await asyncio.to_thread(_next_tag)
    bridge = f"{tag}b"
    veths = [veth_name(tag, index) for index in range(len(names))]
    try:
        await _ip("link", "add", bridge, "type", "bridge")
        await _ip("link", "set", bridge, "up")
        subnet = await _claim_subnet(bridge, int(tag[len(PREFIX) :], 36) % _SUBNETS)
        node, client = (str(subnet.network_address + host) for host in (1, 2))
        pods = [
            PodNet(name, str(subnet.network_address + 10 + i), f"{tag}-{name}")
            for i, name in enumerate(names)
        ]
        for veth, pod in zip(veths, pods, strict=True):
            assert pod.netns is not None  # noqa: S101 - made with one just above
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
    return _Made("netns", node, pods, description, tag)


async def _claim_subnet(bridge: str, start: int) -> ipaddress.IPv4Network:
    """A /24 that overlaps nothing here, claimed for `bridge` by the one route to it.

    The addresses come without their prefix route, and the route is added, never replaced:
    the kernel refuses a second route to the same /24, so of two runs that found it free at
    once one gets it and the other takes the next free one. Deleting the bridge deletes the
    route with it, and nothing else.
    """
    refused: set[int] = set()
    while True:
        index = free_subnet(await asyncio.to_thread(addresses_and_routes), start, refused)
        subnet = subnet_of(index)
        node, client = (f"{subnet.network_address + host}/24" for host in (1, 2))
        try:
            await _ip("addr", "add", node, "dev", bridge, "noprefixroute")
            await _ip("addr", "add", client, "dev", bridge, "noprefixroute")
            # The host side's connections to pods leave from the client address, not the node's.
            src = client.split("/")[0]
            await _ip("route", "add", str(subnet), "dev", bridge, "scope", "link", "src", src)
        except NetworkError:
            now = await asyncio.to_thread(addresses_and_routes)
            if not any(u.dev != bridge and u.network.overlaps(subnet) for u in now):
                raise
            await _ip("addr", "flush", "dev", bridge)
            refused.add(index)
            continue
        return subnet


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


# Names and owners.


def owner_of(name: str) -> str | None:
    """The owner (pid and token) in a name the drill gave, or None if it gave no such name."""
    match = _NAME.match(name)
    return match.group("owner") if match else None


def owner_id(pid: int, token: int) -> str:
    """An owner's part of every name: its pid and a token, each in fixed-width base 36."""
    return _base36(pid, _PID_WIDTH) + _base36(token, _TOKEN_WIDTH)


def veth_name(tag: str, index: int) -> str:
    """The host side of pod `index`'s veth."""
    if not 0 <= index < 36**_POD_WIDTH:
        raise NetworkError(f"pod {index}: at most {36**_POD_WIDTH} pods fit in link names")
    return f"{tag}p{_base36(index, _POD_WIDTH)}"


def owner() -> str:
    """This process's owner id, claimed on first use: its lock is held until the process ends."""
    global _owner  # noqa: PLW0603 - one per process
    with _claiming:
        if _owner is None:
            for _ in range(64):
                candidate = owner_id(os.getpid(), secrets.randbelow(36**_TOKEN_WIDTH))
                lock = _hold(candidate)
                if lock is not None:
                    _owner = (candidate, lock)
                    atexit.register(teardown, f"{PREFIX}{candidate}")
                    break
            else:
                raise NetworkError(f"pid {os.getpid()}: every owner token is held by another run")
        return _owner[0]


_owner: tuple[str, socket.socket] | None = None
_scenarios = 0
#: The owner and the count are claimed from worker threads (`asyncio.to_thread`).
_claiming = threading.RLock()


def _next_tag() -> str:
    """A new scenario's prefix (blocking: the first one cleans up after dead runs)."""
    global _scenarios  # noqa: PLW0603 - one count per process, as the owner
    with _claiming:
        if _owner is None:
            clean_dead_owners()
        mine = owner()
        _scenarios += 1
        return f"{PREFIX}{mine}{_base36(_scenarios % 36**_SCENARIO_WIDTH, _SCENARIO_WIDTH)}"


def _hold(owner: str) -> socket.socket | None:
    """`owner`'s lock, if nobody holds it (the caller then does), or None.

    Abstract unix sockets live as long as the socket and belong to the network namespace,
    which is what the drill's links and routes share, whatever the PID namespaces.
    """
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        lock.bind(f"\0{PREFIX}-{owner}")
    except OSError as e:
        lock.close()
        if e.errno == errno.EADDRINUSE:
            return None
        raise NetworkError(f"the lock of run {owner}: {e}") from e
    return lock


def leftovers(owner: str | None = None) -> list[str]:
    """Namespaces and links the drill made and did not delete (of one owner, or of any)."""
    names = _netns_names() + _link_names()
    return [n for n in names if (o := owner_of(n)) is not None and owner in (None, o)]


def clean_dead_owners() -> list[str]:
    """Delete what runs whose lock nobody holds left behind; what could not be, said."""
    failed = []
    for dead in sorted({o for name in leftovers() if (o := owner_of(name)) is not None}):
        try:
            lock = _hold(dead)
        except NetworkError as e:
            failed.append(str(e))
            continue
        if lock is None:
            continue  # alive: in this process, or another PID namespace, or another container
        with lock:  # held while deleting, so no new run takes this owner meanwhile
            failed += teardown(f"{PREFIX}{dead}")
    return failed


def teardown(tag: str) -> list[str]:
    """Delete every namespace and link whose name starts with `tag`; what could not be, said.

    Blocking and never raises; each `ip` has IP_TIMEOUT_SECONDS, so it always ends. A
    namespace's veth end goes with it and its peer too, unless a process still keeps the
    namespace alive: then the host's end is deleted, which deletes both.
    """
    failed = []
    for name in _netns_names():
        if name.startswith(tag):
            with contextlib.suppress(NetworkError):
                _ip_sync("netns", "del", name)
            if (_NETNS_DIR / name).exists():
                failed.append(f"namespace {name}")
    for name in _link_names():
        if name.startswith(tag):
            with contextlib.suppress(NetworkError):
                _ip_sync("link", "del", name)
            if Path("/sys/class/net", name).exists():
                failed.append(f"link {name}")
    return failed


# Addresses and routes in use.


@dataclass(frozen=True)
class InUse:
    """An IPv4 network something here already uses: an address's subnet or a route's target."""

    network: ipaddress.IPv4Network
    dev: str
    what: str


def addresses_and_routes() -> list[InUse]:
    """Every IPv4 address and route (of every table) in this network namespace."""
    return in_use(
        _ip_sync("-4", "-j", "addr", "show"), _ip_sync("-4", "-j", "route", "show", "table", "all")
    )


def in_use(addr_json: str, route_json: str) -> list[InUse]:
    """What `ip -4 -j addr` and `ip -4 -j route` list, as networks; the default route is not."""
    found = []
    for link in _json_list("ip -4 -j addr", addr_json):
        dev = str(link.get("ifname", "?"))
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or "local" not in info:
                continue
            text = f"{info['local']}/{info.get('prefixlen', 32)}"
            if (network := _ipv4_network(text)) is not None:
                found.append(InUse(network, dev, f"address {text} on {dev}"))
    for route in _json_list("ip -4 -j route", route_json):
        destination = str(route.get("dst", ""))
        if destination != "default" and (network := _ipv4_network(destination)) is not None:
            dev = str(route.get("dev", "?"))
            found.append(InUse(network, dev, f"route {destination} dev {dev}"))
    return found


def free_subnet(taken: Sequence[InUse], start: int, refused: Collection[int] = ()) -> int:
    """The first /24 of DRILL_RANGE from `start` on (wrapping) that overlaps nothing taken."""
    for step in range(_SUBNETS):
        index = (start + step) % _SUBNETS
        if index not in refused and not any(u.network.overlaps(subnet_of(index)) for u in taken):
            return index
    blocking = sorted({u.what for u in taken if u.network.overlaps(DRILL_RANGE)})
    shown = ", ".join(blocking[:3]) + (", ..." if len(blocking) > 3 else "")
    raise NetworkError(f"no /24 of {DRILL_RANGE} is free here (in use: {shown or 'claimed'})")


def subnet_of(index: int) -> ipaddress.IPv4Network:
    """The `index`th /24 of DRILL_RANGE."""
    return ipaddress.IPv4Network((int(DRILL_RANGE.network_address) + 256 * index, 24))


def _json_list(command: str, text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise NetworkError(f"{command}: not JSON ({e}): {text[:100]!r}") from e
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise NetworkError(f"{command}: expected a JSON list of objects, got {text[:100]!r}")
    return value


def _ipv4_network(text: str) -> ipaddress.IPv4Network | None:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return network if isinstance(network, ipaddress.IPv4Network) else None


def _base36(number: int, width: int) -> str:
    out = ""
    while number or len(out) < width:
        number, rest = divmod(number, 36)
        out = _DIGITS[rest] + out
    if len(out) > width:
        raise NetworkError(f"{len(out)} base-36 digits do not fit in {width}")
    return out


# The `ip` command.


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


def _ip_sync(*args: str) -> str:
    """`ip args`, blocking, within IP_TIMEOUT_SECONDS; its output, or NetworkError naming it."""
    command = f"ip {' '.join(args)}"
    try:
        # The drill's own arguments: names it made, addresses it computed.
        done = subprocess.run(  # noqa: S603
            [_ip_binary(), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=IP_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{command}: no answer within {IP_TIMEOUT_SECONDS:g} s") from None
    except OSError as e:
        raise NetworkError(f"{command}: {e}") from e
    if done.returncode != 0:
        raise NetworkError(f"{command}: {done.stderr.strip()[:300]} (exit {done.returncode})")
    return done.stdout


async def _ip(*args: str) -> None:
    """`ip args` within IP_TIMEOUT_SECONDS, killed if it takes longer; NetworkError naming it."""
    command = f"ip {' '.join(args)}"
    try:
        process = await asyncio.create_subprocess_exec(
            _ip_binary(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise NetworkError(f"{command}: {e}") from e
    try:
        async with asyncio.timeout(IP_TIMEOUT_SECONDS):
            _, err = await process.communicate()
    except TimeoutError:
        raise NetworkError(f"{command}: no answer within {IP_TIMEOUT_SECONDS:g} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        text = err.decode(errors="replace").strip()[:300]
        raise NetworkError(f"{command}: {text} (exit {process.returncode})")
