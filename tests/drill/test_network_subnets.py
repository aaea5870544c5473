"""The drill's subnet choice and names: pure parsing, no root needed."""

from __future__ import annotations

import json
import re

import pytest

from sidecar.drill.iproute import NetworkError
from sidecar.drill.netnames import PREFIX, owner_id, owner_of, veth_name
from sidecar.drill.subnets import free_subnet, in_use, subnet_of


def _addr(*links: tuple[str, list[tuple[str, int]]]) -> str:
    return json.dumps(
        [
            {
                "ifname": name,
                "addr_info": [
                    {"family": "inet", "local": ip, "prefixlen": length} for ip, length in addrs
                ],
            }
            for name, addrs in links
        ]
    )


def _routes(*routes: dict[str, str]) -> str:
    return json.dumps(list(routes))


NO_ROUTES = _routes()


def test_an_address_with_a_wide_prefix_in_the_range_blocks_every_subnet_it_covers() -> None:
    # A fake-IP TUN (Clash, sing-box) holds 198.18.0.1/16: the text search took 198.18.1.0/24.
    taken = in_use(_addr(("Meta", [("198.18.0.1", 16)])), NO_ROUTES)
    assert free_subnet(taken, start=1) == 256
    assert str(subnet_of(256)) == "198.19.0.0/24"


def test_a_routed_range_without_a_local_address_is_in_use_too() -> None:
    routes = _routes(
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "198.18.0.0/17", "gateway": "192.0.2.9", "dev": "eth0"},
    )
    taken = in_use(_addr(("eth0", [("192.0.2.2", 24)])), routes)
    assert [u.what for u in taken] == [
        "address 192.0.2.2/24 on eth0",
        "route 198.18.0.0/17 dev eth0",
    ]
    assert free_subnet(taken, start=0) == 128
    assert str(subnet_of(128)) == "198.18.128.0/24"


def test_the_default_route_blocks_nothing_and_host_routes_block_their_subnet() -> None:
    routes = _routes(
        {"dst": "default", "dev": "eth0"},
        {"type": "local", "dst": "198.18.7.1", "dev": "x", "table": "local"},
        {"type": "broadcast", "dst": "198.18.8.255", "dev": "x", "table": "local"},
    )
    taken = in_use(_addr(), routes)
    assert free_subnet(taken, start=7) == 9
    assert free_subnet(taken, start=511) == 511


def test_refused_subnets_are_skipped_and_the_search_wraps() -> None:
    assert free_subnet([], start=511, refused={511, 0}) == 1


def test_no_free_subnet_is_a_clear_error_naming_what_holds_the_range() -> None:
    taken = in_use(_addr(("tun0", [("198.18.0.1", 15)])), NO_ROUTES)
    with pytest.raises(
        NetworkError,
        match=re.escape("no /24 of 198.18.0.0/15 is free here (in use: address 198.18.0.1/15"),
    ):
        free_subnet(taken, start=3)


@pytest.mark.parametrize(
    ("addr_json", "message"),
    [
        ("ip: command failed", "ip -4 -j addr: not JSON"),
        ('{"ifname": "lo"}', "ip -4 -j addr: expected a JSON list of objects"),
        ("[1, 2]", "ip -4 -j addr: expected a JSON list of objects"),
    ],
)
def test_output_that_is_not_ip_json_is_a_clear_error(addr_json: str, message: str) -> None:
    with pytest.raises(NetworkError, match=re.escape(message)):
        in_use(addr_json, NO_ROUTES)


def test_odd_entries_in_ip_json_are_skipped_not_fatal() -> None:
    addrs = json.dumps([{"ifname": "a", "addr_info": [{"family": "inet6"}, "x"]}, {}])
    routes = _routes({"dst": "fe80::/64"}, {"dst": "nonsense"}, {"type": "unicast"})
    assert in_use(addrs, routes) == []


@pytest.mark.parametrize(("pid", "scenario"), [(4242, 1), (4242, 33), (1234567, 69), (4194304, 0)])
def test_names_carry_their_owner_at_a_fixed_width_and_parse_back(pid: int, scenario: int) -> None:
    # Scenario 33 of pid 4242 read as owner 152745 when the widths were free.
    for token in (0, 1295):
        owner = owner_id(pid, token)
        assert len(owner) == 7
        assert int(owner[:5], 36) == pid
        tag = f"{PREFIX}{owner}{scenario:02d}"
        links = [f"{tag}b", veth_name(tag, 0), veth_name(tag, 1295)]
        assert all(len(link) <= 15 for link in links)  # Linux's longest link name
        for name in [*links, f"{tag}-web-1"]:
            assert owner_of(name) == owner


@pytest.mark.parametrize(
    "name",
    [
        "eth0",
        "scd",
        "scd3mqx1b",
        "scd0001a2b3",
        "scd0001a2b3c",
        "scd0001a2b3cq",
        "scd0001a2b3c0p0x",
        "scdABCDEFG00b",
    ],
)
def test_names_the_drill_did_not_give_have_no_owner(name: str) -> None:
    assert owner_of(name) is None


def test_too_many_pods_for_link_names_is_a_clear_error() -> None:
    with pytest.raises(NetworkError, match="at most 1296 pods"):
        veth_name("scd0000100000", 1296)
    with pytest.raises(NetworkError, match="do not fit"):
        owner_id(36**5, 0)
