"""sock_diag on real sockets: in-flight vs idle, per-socket counters in runs of messages, the kernel
port filter, IPv4 and IPv6, bad replies, the /proc fallback."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from sidecar.adapters.traffic import inetdiag
from sidecar.adapters.traffic.inetdiag import Dump, DumpParser
from sidecar.adapters.traffic.netns import NetnsTrafficSource
from sidecar.adapters.traffic.sockdiag import (
    CHUNK,
    NETLINK_SOCK_DIAG,
    SockDiag,
    _collected_once,
    dump_request,
    port_filter,
)
from sidecar.errors import AdapterError
from sidecar.model.traffic import Connection, TcpState, TrafficSample, is_in_flight


@contextmanager
def connected(
    family: int = socket.AF_INET, host: str = "127.0.0.1"
) -> Iterator[tuple[int, socket.socket, socket.socket]]:
    with socket.socket(family) as server:
        server.bind((host, 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection((host, port)) as client:
            accepted, _ = server.accept()
            with accepted:
                yield port, client, accepted


def wait_for(
    predicate: Callable[[frozenset[int], tuple[Connection, ...]], object],
    diag: SockDiag,
    ports: frozenset[int],
) -> tuple[frozenset[int], tuple[Connection, ...]]:
    """Sample until the kernel shows what the test arranged (bytes in flight take a moment)."""
    for _ in range(200):
        listening, conns = diag.read(ports)
        if predicate(listening, conns):
            return listening, conns
        socket.socket().close()  # a syscall, no sleep: the loopback delivery is immediate
    pytest.fail("the kernel never showed the expected sockets")


def test_a_request_is_in_flight_until_answered_then_idle() -> None:
    diag = SockDiag()
    with connected() as (port, client, accepted):
        ports = frozenset({port})
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _, conns = wait_for(lambda _l, c: c and c[0].rx_queue > 0, diag, ports)
        assert is_in_flight(conns[0], has_timing=True)
        request = accepted.recv(1000)  # the app read the request: no bytes queued any more
        _, conns = wait_for(lambda _l, c: c and c[0].rx_queue == 0, diag, ports)
        assert is_in_flight(conns[0], has_timing=True), "read but not answered is still in flight"
        assert conns[0].bytes_received == len(request)
        accepted.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        client.recv(1000)
        listening, conns = wait_for(lambda _l, c: c and c[0].bytes_acked, diag, ports)
        assert listening == {port}
        (conn,) = conns
        assert conn.state == TcpState.ESTABLISHED
        assert conn.remote_ip == "127.0.0.1"
        assert conn.remote_port == client.getsockname()[1]
        # Answered less than 250 ms ago counts as still sending; with an old answer it is idle.
        assert conn.last_send_ms is not None
        assert conn.last_recv_ms is not None
        older = conn._replace(
            last_send_ms=conn.last_send_ms + 1000, last_recv_ms=conn.last_recv_ms + 1000
        )
        assert not is_in_flight(older, has_timing=True)
    diag.close()


def test_only_watched_ports_come_back_from_the_kernel_filter() -> None:
    diag = SockDiag()
    with connected() as (port_a, *_), connected() as (port_b, *_):
        listening, conns = diag.read(frozenset({port_a}))
        assert listening == {port_a}
        assert {c.local_port for c in conns} == {port_a}
        listening, conns = diag.read(frozenset({port_a, port_b}))
        assert listening == {port_a, port_b}
    diag.close()


def test_ipv6_and_dual_stack_peers_are_reported() -> None:
    diag = SockDiag()
    with connected(socket.AF_INET6, "::1") as (port, client, _):
        _, conns = diag.read(frozenset({port}))
        assert [(c.remote_ip, c.remote_port) for c in conns] == [("::1", client.getsockname()[1])]
    diag.close()


def test_port_filter_bytecode_accepts_at_the_end_and_rejects_past_it() -> None:
    code = port_filter([8080, 80, 9090])
    assert len(code) == 3 * 8 + 2 * 4
    # Each test falls through on a match (yes 8) and skips itself and a JMP otherwise (no 12).
    assert code[:4] == bytes([11, 8]) + (12).to_bytes(2, sys.byteorder)
    assert int.from_bytes(code[6:8], sys.byteorder) == 80
    # A match lands on a JMP to the very end: 4 + the 20 bytes after it.
    assert code[8:12] == bytes([1, 4]) + (24).to_bytes(2, sys.byteorder)
    # The last test's miss jumps 4 bytes past the end: rejected.
    assert code[-8:-4] == bytes([11, 8]) + (12).to_bytes(2, sys.byteorder)


def test_the_kernel_accepts_the_filter_for_several_ports() -> None:
    diag = SockDiag()
    with connected() as (port_a, *_), connected() as (port_b, *_), connected() as (port_c, *_):
        listening, conns = diag.read(frozenset({port_a, port_c}))
        assert diag._kernel_filter, "the kernel refused the bytecode: the filter fell back"
        assert listening == {port_a, port_c}
        assert {c.local_port for c in conns} == {port_a, port_c}
        assert port_b not in {c.local_port for c in conns}
    diag.close()


async def test_the_source_samples_on_the_loop_clock_and_falls_back_to_proc() -> None:
    with connected() as (port, *_):
        source = NetnsTrafficSource(frozenset({port}), "auto")
        sample = await source.sample()
        assert sample.has_timing
        assert sample.listening == {port}
        assert sample.taken_at <= asyncio.get_running_loop().time()
        proc = NetnsTrafficSource(frozenset({port}), "proc")
        slow = await proc.sample()
        assert not slow.has_timing
        assert len(slow.connections) == len(sample.connections) == 1
        source.close()
        proc.close()


async def test_a_sample_is_dated_when_its_dump_is_done() -> None:
    """tcp_info counts back from the dump: dated earlier, arrivals would look older than they
    are and a silence longer (the quiet rules would end early by the dump's duration)."""
    loop = asyncio.get_running_loop()
    with connected() as (port, *_):
        source = NetnsTrafficSource(frozenset({port}), "auto")
        dumped_at: list[float] = []
        read_now = source.read_now

        def slow_read(taken_at: float) -> TrafficSample:
            sample = read_now(taken_at)
            dumped_at.append(loop.time())  # the clock, read from the worker thread
            return sample

        source.read_now = slow_read  # type: ignore[method-assign]
        sample = await source.sample()
        source.close()
    assert sample.taken_at >= dumped_at[0]


def test_an_idle_source_holds_no_netlink_socket_until_its_first_sample() -> None:
    source = NetnsTrafficSource(frozenset({8080}), "auto")
    assert source._diag is None
    source.close()  # nothing to close: no error


IP_BIND_ADDRESS_NO_PORT = 24  # include/uapi/linux/in.h; not in Python's socket module before 3.12
#: More than inetdiag.MIN_RUN, so the kernel's reply has runs parsed column by column.
MANY = 40


@contextmanager
def served(
    count: int, family: int = socket.AF_INET, host: str = "127.0.0.1"
) -> Iterator[tuple[socket.socket, list[tuple[socket.socket, socket.socket]]]]:
    """`count` connections to one listener, each from its own loopback address where IPv4.

    Connection i sent 100 + i bytes and was answered with 10 + i, so each socket's counters
    say which connection it is.
    """
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket(family))
        server.bind((host, 0))
        server.listen(count)
        port = server.getsockname()[1]
        pairs = []
        for i in range(count):
            client = stack.enter_context(socket.socket(family))
            if family == socket.AF_INET:
                # Its own address, the port picked at connect by the whole 4-tuple: a busy
                # machine's TIME_WAIT sockets do not run bind() out of ports.
                client.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                client.bind((f"127.0.0.{i + 1}", 0))
            client.connect((host, port))
            accepted = stack.enter_context(server.accept()[0])
            client.sendall(b"q" * (100 + i))
            assert accepted.recv(100 + i, socket.MSG_WAITALL) == b"q" * (100 + i)
            accepted.sendall(b"a" * (10 + i))
            assert client.recv(10 + i, socket.MSG_WAITALL) == b"a" * (10 + i)
            pairs.append((client, accepted))
        yield server, pairs


def raw_dump(family: int, ports: frozenset[int]) -> bytes:
    """The kernel's whole reply to the sampler's request, as it came."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.send(dump_request(family, ports, kernel_filter=True))
        datagrams = []
        while True:
            datagram = nl.recv(1 << 16)
            datagrams.append(datagram)
            if datagram[-20:-16] == (20).to_bytes(4, sys.byteorder) and datagram[-16] == 3:
                return b"".join(datagrams)


def by_peer(conns: Iterable[Connection]) -> dict[tuple[str, int], Connection]:
    """Clients bound to their own addresses may share a port number: the address tells apart."""
    return {(c.remote_ip, c.remote_port): c for c in conns}


def test_every_socket_of_a_run_gets_its_own_counters_timing_and_peer() -> None:
    diag = SockDiag()
    with served(MANY) as (server, pairs):
        port = server.getsockname()[1]
        listening, conns = diag.read(frozenset({port}))
        assert listening == {port}
        seen = by_peer(conns)
        assert len(conns) == MANY
        for i, (client, accepted) in enumerate(pairs):
            conn = seen[client.getsockname()[:2]]
            assert conn.local_port == port
            assert conn.remote_ip == f"127.0.0.{i + 1}"
            assert conn.state == TcpState.ESTABLISHED
            assert (conn.bytes_received, conn.bytes_acked) == (100 + i, 10 + i)
            assert (conn.rx_queue, conn.tx_queue) == (0, 0)
            assert conn.last_recv_ms is not None
            assert conn.last_send_ms is not None
            assert 0 <= conn.last_recv_ms < 60_000
            assert 0 <= conn.last_send_ms < 60_000
            assert accepted.fileno() >= 0
        assert len({c.key for c in conns}) == MANY, "socket cookies tell the sockets apart"
        keys = {(c.remote_ip, c.remote_port): c.key for c in conns}
        _, again = diag.read(frozenset({port}))
        assert {(c.remote_ip, c.remote_port): c.key for c in again} == keys, "cookies stay"
    diag.close()


def test_queues_and_close_wait_show_in_a_run() -> None:
    diag = SockDiag()
    with served(MANY) as (server, pairs):
        port = server.getsockname()[1]
        pairs[3][0].sendall(b"unread")
        pairs[5][0].close()
        _, conns = wait_for(
            lambda _l, c: (
                any(x.rx_queue == 6 for x in c) and any(x.state == TcpState.CLOSE_WAIT for x in c)
            ),
            diag,
            frozenset({port}),
        )
        states = {c.state for c in conns}
        assert states == {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT}
        queued = [c for c in conns if c.rx_queue and c.state == TcpState.ESTABLISHED]
        assert [(c.rx_queue, c.bytes_received) for c in queued] == [(6, 103 + 6)]
        # The peer's FIN counts as one byte received and one queued.
        (closing,) = [c for c in conns if c.state == TcpState.CLOSE_WAIT]
        assert (closing.rx_queue, closing.bytes_received) == (1, 105 + 1)
    diag.close()


def test_columns_and_message_by_message_parse_the_same_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with served(MANY) as (v4, _), served(MANY, socket.AF_INET6, "::1") as (v6, _):
        ports = frozenset({v4.getsockname()[1], v6.getsockname()[1]})
        for family in (socket.AF_INET, socket.AF_INET6):
            reply = memoryview(raw_dump(family, ports))
            fast = Dump(family, ports, kernel_filtered=True)
            assert DumpParser().parse(reply, fast)
            monkeypatch.setattr(inetdiag, "MIN_RUN", 1 << 30)
            slow = Dump(family, ports, kernel_filtered=True)
            assert DumpParser().parse(reply, slow)
            monkeypatch.undo()
            assert fast.connections == slow.connections
            assert fast.listening == slow.listening
            assert len(fast.connections) == MANY


def test_dual_stack_listener_reports_ipv4_peers_as_ipv4() -> None:
    diag = SockDiag()
    with socket.socket(socket.AF_INET6) as server, ExitStack() as stack:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", 0))
        server.listen(MANY)
        port = server.getsockname()[1]
        for i in range(MANY):
            client = stack.enter_context(socket.socket())
            client.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            client.bind((f"127.0.0.{i + 1}", 0))
            client.connect(("127.0.0.1", port))
            stack.enter_context(server.accept()[0])
        listening, conns = diag.read(frozenset({port}))
        assert listening == {port}
        assert sorted(c.remote_ip for c in conns) == sorted(f"127.0.0.{i + 1}" for i in range(MANY))
    diag.close()


def test_without_the_kernel_filter_other_ports_are_dropped_here() -> None:
    diag = SockDiag()
    diag._kernel_filter = False  # as after an old kernel refused the bytecode
    with served(MANY) as (watched, _), served(MANY) as (other, _):
        port = watched.getsockname()[1]
        listening, conns = diag.read(frozenset({port}))
        assert listening == {port}
        assert len(conns) == MANY
        assert {c.local_port for c in conns} == {port}
        assert other.getsockname()[1] not in {c.local_port for c in conns}
    diag.close()


def test_a_short_datagram_is_a_clear_error_not_a_hang() -> None:
    diag = SockDiag()
    view = memoryview(bytearray(CHUNK))
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver:
        sender.send(b"\x10\x00\x00")
        with pytest.raises(AdapterError, match="datagram of 3 bytes, shorter than a header"):
            diag._receive(
                receiver, view, Dump(socket.AF_INET, frozenset({80}), kernel_filtered=True)
            )
        # A reply that says it is done where its messages do not end.
        done = (20).to_bytes(4, sys.byteorder) + (3).to_bytes(2, sys.byteorder) + bytes(14)
        diag_message = (100).to_bytes(4, sys.byteorder) + (20).to_bytes(2, sys.byteorder)
        sender.send(diag_message + bytes(10) + done)
        with pytest.raises(AdapterError, match="malformed message"):
            diag._receive(
                receiver, view, Dump(socket.AF_INET, frozenset({80}), kernel_filtered=True)
            )
    view.release()
    diag.close()


def test_a_sample_runs_the_young_collection_it_made_due_before_it_ends() -> None:
    events: list[object] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        events.append((phase, info["generation"]))

    threshold = gc.get_threshold()
    gc.set_threshold(10, *threshold[1:])
    gc.callbacks.append(seen)
    try:
        with _collected_once():
            events.append("building")
            tuples = [(i, [i]) for i in range(100)]
            events.append("built")
        after = len(events)  # no allocation: a collection counted here ran inside the sample
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
    building, built = events.index("building"), events.index("built")
    assert built == building + 1, "the collector ran while the sample built its tuples"
    assert ("start", 0) in events[built:after], "no young collection at the sample's end"
    assert len(tuples) == 100


def test_a_sample_leaves_the_collector_as_it_found_it() -> None:
    diag = SockDiag()
    with served(MANY) as (server, _):
        ports = frozenset({server.getsockname()[1]})
        assert gc.isenabled()
        diag.read(ports)
        assert gc.isenabled(), "the collector was not turned back on"
        gc.disable()
        try:
            _, again = diag.read(ports)
            assert not gc.isenabled(), "a collector turned off elsewhere was turned on"
            assert len(again) == MANY
        finally:
            gc.enable()
    diag.close()


def test_a_sample_after_close_opens_nothing_and_says_why() -> None:
    """A worker thread can outlive the wait for it; after close() it must not open a socket."""
    source = NetnsTrafficSource(frozenset({8080}), "auto")
    source.close()
    with pytest.raises(AdapterError, match="closed"):
        source.read_now(0.0)
    assert source._diag is None
