"""The traffic model: in flight vs idle keep-alive, what counts, group exit (quiet: test_lull)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pytest

from sidecar.model.traffic import (
    Connection,
    TcpState,
    TrafficSample,
    assess,
    group_exited,
    is_in_flight,
    policy_for,
)

E, CW, LISTEN = TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.LISTEN


def conn(  # noqa: PLR0913, PLR0917 - one knob per field of a Connection
    port: int = 8080,
    peer: str = "10.0.0.9",
    state: int = E,
    key: int = 1,
    rx: int = 0,
    tx: int = 0,
    recv: int | None = 5000,
    send: int | None = 4000,
    acked: int | None = 100,
    received: int | None = 80,
) -> Connection:
    return Connection(port, peer, 40000, state, key, rx, tx, recv, send, acked, received)


@pytest.mark.parametrize(
    ("connection", "busy"),
    [
        (
            conn(recv=5000, send=4000),
            False,
        ),  # answered 4 s ago, asked nothing since: idle keep-alive
        (conn(recv=300, send=4000), True),  # asked 0.3 s ago, not answered yet
        (conn(rx=120), True),  # request bytes not read by the app yet
        (conn(tx=4096), True),  # answer bytes not acknowledged yet
        (conn(recv=5000, send=100), True),  # still streaming an answer
        (
            conn(recv=40, send=40, acked=0, received=18),
            True,
        ),  # first request, same millisecond as the handshake
        (
            conn(recv=900, send=900, acked=0, received=0),
            False,
        ),  # connected, never asked (pre-warmed pool)
        (
            conn(recv=900, send=900, acked=None, received=None),
            False,
        ),  # old kernel, equal times: answered
    ],
)
def test_in_flight_tells_work_from_idle_keep_alive(connection: Connection, busy: bool) -> None:
    assert is_in_flight(connection, has_timing=True) is busy


def test_without_timing_every_open_connection_is_busy() -> None:
    assert is_in_flight(conn(recv=None, send=None), has_timing=False)


def sample(
    *conns: Connection, listening: Iterable[int] = (), at: float = 100.0, timing: bool = True
) -> TrafficSample:
    return TrafficSample(at, frozenset(listening), tuple(conns), timing)


def test_assess_counts_only_watched_ports_and_never_the_node() -> None:
    policy = policy_for({8080, 15006}, "10.0.0.1", [ipaddress.ip_network("192.168.0.0/16")])
    view = assess(
        sample(
            conn(port=8080, recv=200, send=4000),  # in flight
            conn(port=15006, key=2),  # idle
            conn(port=9999, key=3, recv=10, send=4000),  # not watched
            conn(peer="10.0.0.1", key=4, recv=10, send=4000),  # kubelet probe
            conn(peer="192.168.3.4", key=5, recv=10, send=4000),  # ignored range
            conn(state=CW, key=6),  # peer closed: apart
        ),
        policy,
    )
    assert (view.established, view.in_flight, view.idle, view.close_wait) == (2, 1, 1, 1)
    assert view.in_flight_by_port == {8080: 1}
    assert view.last_activity_at == pytest.approx(100.0 - 0.2)


def test_the_node_counts_as_a_caller_when_callers_come_from_it() -> None:
    """An ingress on the node's host network: its connections are traffic, ranges still not."""
    ranges = [ipaddress.ip_network("192.168.0.0/16")]
    policy = policy_for({8080}, "10.0.0.1", ranges, node_is_traffic=True)
    assert not policy.ignores("10.0.0.1")
    assert policy.ignores("192.168.3.4")
    view = assess(sample(conn(peer="10.0.0.1", recv=10, send=4000)), policy)
    assert (view.established, view.in_flight) == (1, 1)


def test_ipv4_mapped_peers_are_matched_as_ipv4() -> None:
    policy = policy_for({8080}, "10.0.0.1")
    assert policy.ignores("10.0.0.1")
    assert not policy.ignores("10.0.0.2")


def test_assess_decides_each_peer_once_and_keeps_the_counted_keys() -> None:
    policy = policy_for({8080}, "10.0.0.1")
    view = assess(
        sample(conn(key=1), conn(key=2, peer="10.0.0.1"), conn(key=3), conn(key=4, state=CW)),
        policy,
    )
    assert view.keys == {1, 3}  # the node's probe and the half-closed one are not counted


@pytest.mark.parametrize(
    ("listening", "running", "exited"),
    [
        ({8080}, None, False),  # still listening
        (set(), None, True),  # listener gone, processes not visible
        (set(), True, False),  # listener gone but the process lingers (shutdown hooks)
        (set(), False, True),
        ({9090}, False, True),  # another container's port
    ],
)
def test_group_exit_needs_ports_and_processes_gone(
    listening: set[int], running: bool | None, exited: bool
) -> None:
    assert group_exited(sample(listening=listening), frozenset({8080}), running) is exited


def test_a_policy_parses_each_peer_once_across_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = policy_for({8080}, "10.0.0.1")
    parsed: list[str] = []
    parse = ipaddress.ip_address

    def counting(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        parsed.append(ip)
        return parse(ip)

    monkeypatch.setattr(ipaddress, "ip_address", counting)
    for _ in range(3):  # three samples of the same two peers
        assess(sample(conn(key=1), conn(key=2, peer="10.0.0.1")), policy)
    assert sorted(parsed) == ["10.0.0.1", "10.0.0.9"]
