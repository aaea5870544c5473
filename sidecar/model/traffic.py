"""Traffic verdicts over samples of the pod's shared network namespace."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: A policy remembers this many peers' answers, then starts over (bounded memory).
MAX_REMEMBERED_PEERS = 65536


class TcpState(IntEnum):
    """Kernel TCP states (include/net/tcp_states.h), as /proc/net/tcp and sock_diag number them."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11


class Connection(NamedTuple):
    """One TCP socket on a watched local port, as one sample saw it.

    A NamedTuple, not a dataclass: a sample builds ten thousand of these in a few milliseconds.
    """

    local_port: int
    remote_ip: str
    remote_port: int
    state: int
    #: Identity across samples: the socket cookie (netlink) or inode (/proc).
    key: int
    rx_queue: int = 0
    tx_queue: int = 0
    #: Milliseconds since data last arrived / was last sent; None when the source cannot tell.
    last_recv_ms: int | None = None
    last_send_ms: int | None = None
    #: Bytes the peer acknowledged (what we answered) and bytes received; None when unknown.
    bytes_acked: int | None = None
    bytes_received: int | None = None


@dataclass(frozen=True)
class TrafficSample:
    """Every socket on the watched ports at one moment (loop time)."""

    taken_at: float
    listening: frozenset[int]
    connections: tuple[Connection, ...]
    #: True when the source reports per-socket timing (tcp_info), so idle can be told from busy.
    has_timing: bool


@dataclass(frozen=True)
class TrafficPolicy:
    """What counts as the pod's inbound traffic."""

    inbound_ports: frozenset[int]
    #: Peers that are not traffic: the node (kubelet probes and hooks), configured ranges.
    ignored_peers: tuple[Network, ...] = ()
    #: Answers so far, kept across samples: parsing an address costs more than the rest of a
    #: connection's handling, and a shutdown sees the same peers sample after sample.
    _answers: dict[str, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def ignores(self, ip: str) -> bool:
        """Whether connections from this peer are not traffic."""
        if not self.ignored_peers:
            return False
        answer = self._answers.get(ip)
        if answer is None:
            address = ipaddress.ip_address(ip)
            answer = any(address in net for net in self.ignored_peers)
            if len(self._answers) >= MAX_REMEMBERED_PEERS:
                self._answers.clear()
            self._answers[ip] = answer
        return answer


@dataclass(frozen=True)
class TrafficView:
    """What one sample says about inbound traffic."""

    established: int = 0
    in_flight: int = 0
    idle: int = 0
    #: Peer closed, the app has not: still an open descriptor, reported apart, never waited on.
    close_wait: int = 0
    in_flight_by_port: dict[int, int] = field(default_factory=dict)
    #: Loop time of the latest inbound data or new connection this sample can prove.
    last_activity_at: float | None = None
    #: Identities of the established connections counted, to spot new ones in the next sample.
    keys: frozenset[int] = frozenset()


def policy_for(
    inbound_ports: Iterable[int],
    host_ip: str,
    extra: Iterable[Network] = (),
    *,
    node_is_traffic: bool = False,
) -> TrafficPolicy:
    """The node's own IP is not traffic: the kubelet probes and calls hooks from it.

    Unless callers come from it too (`node_is_traffic`): an ingress on the host network of the
    same node, or NodePort traffic masqueraded to the node's address.
    """
    ignored = list(extra)
    if host_ip and not node_is_traffic:
        ignored.append(ipaddress.ip_network(host_ip))
    return TrafficPolicy(frozenset(inbound_ports), tuple(ignored))


#: A connection that sent data this recently is still answering (a streamed response).
SENDING_MS = 250


def is_in_flight(conn: Connection, *, has_timing: bool) -> bool:
    """Whether a request is being worked on over this connection.

    With tcp_info: unread or unsent bytes; a first request not answered at all; data that
    arrived after the last data went out (a request not answered yet); or data still going out.
    An idle keep-alive connection answered its last request, so its last send is newer than its
    last receive and a while ago. Without timing, every established connection is assumed busy:
    slower to drain, never wrong.
    """
    if conn.rx_queue or conn.tx_queue:
        return True
    if not has_timing or conn.last_recv_ms is None or conn.last_send_ms is None:
        return True
    if conn.bytes_received is not None and conn.bytes_acked is not None:
        if conn.bytes_received == 0:
            return False  # connected, never asked anything (a pre-warmed pool)
        if conn.bytes_acked == 0:
            return True  # asked, never answered; timings tie when both came in one millisecond
    return conn.last_recv_ms < conn.last_send_ms or conn.last_send_ms < SENDING_MS


def assess(sample: TrafficSample, policy: TrafficPolicy) -> TrafficView:
    """Count inbound connections on the watched ports and find the latest inbound activity."""
    established = in_flight = idle = close_wait = 0
    by_port: dict[int, int] = {}
    keys: list[int] = []
    freshest_ms: int | None = None
    ports, ignores = policy.inbound_ports, policy.ignores
    for conn in sample.connections:
        if conn.local_port not in ports or ignores(conn.remote_ip):
            continue
        if conn.state == TcpState.CLOSE_WAIT:
            close_wait += 1
            continue
        if conn.state != TcpState.ESTABLISHED:
            continue
        established += 1
        keys.append(conn.key)
        if is_in_flight(conn, has_timing=sample.has_timing):
            in_flight += 1
            by_port[conn.local_port] = by_port.get(conn.local_port, 0) + 1
        else:
            idle += 1
        # A new connection's last receive is its handshake, so it counts as activity too.
        if conn.last_recv_ms is not None and (
            freshest_ms is None or conn.last_recv_ms < freshest_ms
        ):
            freshest_ms = conn.last_recv_ms
    last = None if freshest_ms is None else sample.taken_at - freshest_ms / 1000
    return TrafficView(established, in_flight, idle, close_wait, by_port, last, frozenset(keys))


def group_exited(
    sample: TrafficSample, ports: frozenset[int], processes_running: bool | None
) -> bool:
    """A group has exited when none of its ports listen and none of its processes run.

    `processes_running` is None when the process namespace is not shared (nothing to see).
    """
    if ports & sample.listening:
        return False
    return not processes_running
