"""Which /24 of the benchmarking range a scenario's bridge gets: one nothing here uses.

The drill's range is 198.18.0.0/15 (RFC 2544), 512 /24s. A /24 is free when it overlaps no
IPv4 address or route of the host, in any routing table, as `ip -4 -j` lists them: a VPN's or
a fake-IP TUN's route into the range is never shadowed. Two runs that see the same /24 free
at once are told apart by the kernel, which takes only one route to it (`claim_subnet`).
Parsing and the choice are pure (tested without root); only the look and the claim run `ip`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.drill.iproute import NetworkError, ip, ip_blocking

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

#: The range the drill may use, one /24 per scenario.
DRILL_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
_SUBNETS = 512


@dataclass(frozen=True)
class InUse:
    """An IPv4 network something here already uses: an address's subnet or a route's target."""

    network: ipaddress.IPv4Network
    dev: str
    what: str


def addresses_and_routes() -> list[InUse]:
    """Every IPv4 address and route (of every table) in this network namespace."""
    return in_use(
        ip_blocking("-4", "-j", "addr", "show"),
        ip_blocking("-4", "-j", "route", "show", "table", "all"),
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


async def claim_subnet(bridge: str, start: int) -> ipaddress.IPv4Network:
    """A /24 that overlaps nothing here, the first from `start` on, claimed for `bridge`.

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
            await ip("addr", "add", node, "dev", bridge, "noprefixroute")
            await ip("addr", "add", client, "dev", bridge, "noprefixroute")
            # The host side's connections to pods leave from the client address, not the node's.
            src = client.split("/")[0]
            await ip("route", "add", str(subnet), "dev", bridge, "scope", "link", "src", src)
        except NetworkError:
            now = await asyncio.to_thread(addresses_and_routes)
            if not any(u.dev != bridge and u.network.overlaps(subnet) for u in now):
                raise
            await ip("addr", "flush", "dev", bridge)
            refused.add(index)
            continue
        return subnet


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
