"""sock_diag on real sockets: in-flight vs idle, the kernel port filter, the /proc fallback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from sidecar.adapters.traffic.netns import NetnsTrafficSource
from sidecar.adapters.traffic.sockdiag import SockDiag, port_filter
from sidecar.model.traffic import Connection, TcpState, is_in_flight


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
    code = port_filter([80, 8080])
    assert len(code) == 16
    # First test jumps to the end (16 bytes) on a match, to the next test (8) otherwise.
    assert code[:4] == bytes([11, 16]) + (8).to_bytes(2, "little")
    # The last test rejects by jumping 4 bytes past the end.
    assert code[8:12] == bytes([11, 8]) + (12).to_bytes(2, "little")


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
