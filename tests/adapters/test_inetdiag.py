"""inet_diag replies built byte by byte: runs, odd messages in between, layouts, bad input."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from sidecar.adapters.traffic import inetdiag
from sidecar.adapters.traffic.inetdiag import Dump, DumpParser
from sidecar.errors import AdapterError
from sidecar.model.traffic import Connection, TcpState

PORTS = frozenset({8080})
INFO, SHUTDOWN, ULP_INFO = 2, 8, 19
MULTI = 2


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def tcp_info(sent: int, recv: int, acked: int, received: int, size: int = 232) -> bytes:
    info = bytearray(size)
    struct.pack_into("=I", info, 44, sent)
    struct.pack_into("=I", info, 52, recv)
    if size >= 136:
        struct.pack_into("=QQ", info, 120, acked, received)
    return bytes(info)


def message(
    i: int,
    *,
    family: int = socket.AF_INET,
    state: int = TcpState.ESTABLISHED,
    sport: int = 8080,
    peer: bytes | None = None,
    cookie: int | None = None,
    attrs: bytes | None = None,
    kind: int = 20,
) -> bytes:
    """Socket i: remote port 1000 + i, queues i and 2i, timing i ms and 2i ms, 100i bytes."""
    if peer is None:
        peer = bytes([10, 0, 0, 1 + i % 3]) + bytes(12)
    body = (
        struct.pack("=BBBB", family, state, 0, 0)
        + struct.pack(">HH", sport, 1000 + i)
        + bytes(16)
        + peer
        + struct.pack("=IQIIIII", 0, i + 1 if cookie is None else cookie, 0, i, 2 * i, 0, 0)
    )
    if attrs is None:
        attrs = attr(SHUTDOWN, b"\0") + attr(INFO, tcp_info(2 * i, i, 100 * i, 200 * i))
    return struct.pack("=IHHII", 16 + len(body) + len(attrs), kind, MULTI, 1, 0) + body + attrs


def done(code: int = 0) -> bytes:
    return struct.pack("=IHHIIi", 20, 3, MULTI, 1, 0, code)


def expected(i: int, peer: str | None = None) -> Connection:
    return Connection(
        8080,
        peer or f"10.0.0.{1 + i % 3}",
        1000 + i,
        1,
        i + 1,
        i,
        2 * i,
        i,
        2 * i,
        100 * i,
        200 * i,
    )


def parse(reply: bytes, family: int = socket.AF_INET, *, filtered: bool = True) -> Dump:
    dump = Dump(family, PORTS, kernel_filtered=filtered)
    assert DumpParser().parse(memoryview(reply), dump), "the reply's NLMSG_DONE was not seen"
    return dump


def slowly(reply: bytes, monkeypatch: pytest.MonkeyPatch, family: int = socket.AF_INET) -> Dump:
    monkeypatch.setattr(inetdiag, "MIN_RUN", 1 << 30)
    dump = parse(reply, family)
    monkeypatch.undo()
    return dump


def test_runs_and_an_odd_message_between_them_give_every_socket_its_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ulp = (
        attr(SHUTDOWN, b"\0") + attr(ULP_INFO, b"tls\0") + attr(INFO, tcp_info(40, 20, 2000, 4000))
    )
    reply = (
        b"".join(message(i) for i in range(20))
        + message(20, attrs=ulp)
        + b"".join(message(i) for i in range(21, 41))
        + done()
    )
    dump = parse(reply)
    assert dump.connections == [expected(i) for i in range(41)]
    assert dump.connections == slowly(reply, monkeypatch).connections


def test_a_stride_off_eight_bytes_still_reads_64_bit_fields() -> None:
    big = (7 << 32) + 5
    attrs = [attr(INFO, tcp_info(1, 2, big + i, big * 2)) for i in range(12)]
    assert all((88 + len(a)) % 8 == 4 for a in attrs)
    reply = b"".join(message(i, cookie=big + i, attrs=attrs[i]) for i in range(12)) + done()
    conns = parse(reply).connections
    assert [c.key for c in conns] == [big + i for i in range(12)]
    assert [c.bytes_acked for c in conns] == [big + i for i in range(12)]
    assert {c.bytes_received for c in conns} == {big * 2}


def test_a_short_tcp_info_gives_timing_only_and_none_gives_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = b"".join(
        message(i, attrs=attr(INFO, tcp_info(2 * i, i, 0, 0, size=104))) for i in range(10)
    )
    none = b"".join(message(i, attrs=attr(SHUTDOWN, b"\0")) for i in range(10, 20))
    reply = short + none + done()
    conns = parse(reply).connections
    assert [(c.last_recv_ms, c.last_send_ms, c.bytes_acked) for c in conns[:10]] == [
        (i, 2 * i, None) for i in range(10)
    ]
    assert {(c.last_recv_ms, c.bytes_received) for c in conns[10:]} == {(None, None)}
    assert conns == slowly(reply, monkeypatch).connections


def test_listeners_inside_a_run_are_listening_ports_not_connections() -> None:
    reply = (
        message(0, state=TcpState.LISTEN)
        + b"".join(message(i) for i in range(1, 10))
        + message(10, state=TcpState.LISTEN)
        + b"".join(message(i) for i in range(11, 20))
        + done()
    )
    dump = parse(reply)
    assert dump.listening == {8080}
    assert [c.remote_port for c in dump.connections] == [
        1000 + i for i in range(20) if i not in {0, 10}
    ]


def test_unfiltered_replies_keep_only_the_watched_ports() -> None:
    reply = b"".join(message(i, sport=8080 if i % 2 else 9090) for i in range(20)) + done()
    dump = parse(reply, filtered=False)
    assert [c.remote_port for c in dump.connections] == [1000 + i for i in range(1, 20, 2)]


def test_ipv6_peers_native_and_v4_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    native = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.9")
    reply = (
        b"".join(
            message(i, family=socket.AF_INET6, peer=native if i % 2 else mapped) for i in range(16)
        )
        + b"".join(message(i, family=socket.AF_INET6, peer=native) for i in range(16, 26))
        + done()
    )
    conns = parse(reply, socket.AF_INET6).connections
    assert [c.remote_ip for c in conns] == [
        "2001:db8::7" if i % 2 or i >= 16 else "192.0.2.9" for i in range(26)
    ]
    assert conns == slowly(reply, monkeypatch, socket.AF_INET6).connections


def test_a_full_peer_cache_starts_over_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inetdiag, "PEER_CACHE", 2)
    reply = b"".join(message(i) for i in range(30)) + done()
    assert parse(reply).connections == [expected(i) for i in range(30)]


def test_the_reply_may_end_without_done_and_continue_in_the_next_chunk() -> None:
    parser = DumpParser()
    dump = Dump(socket.AF_INET, PORTS, kernel_filtered=True)
    assert not parser.parse(memoryview(b"".join(message(i) for i in range(10))), dump)
    assert parser.parse(memoryview(message(10) + done()), dump)
    assert dump.connections == [expected(i) for i in range(11)]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (message(0)[:10], "truncated message header (10 bytes)"),
        (message(0) + message(1)[:12], "truncated message header (12 bytes)"),
        (struct.pack("=IHHII", 40, 20, MULTI, 1, 0) + bytes(24), "malformed message (length 40"),
        (message(0)[:-8], "malformed message (length"),
        (message(0, attrs=struct.pack("=HH", 2, INFO)), "malformed attribute (length 2)"),
        (message(0, attrs=struct.pack("=HH", 400, INFO) + bytes(4)), "malformed attribute"),
        (message(0, kind=99), "unexpected message type 99"),
        (
            struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -errno.EINVAL) + bytes(16),
            "refused the request: EINVAL",
        ),
        (struct.pack("=IHHII", 16, 2, 0, 1, 0), "truncated error message"),
        (message(0) + done(-errno.EINTR), "dump ended with EINTR"),
    ],
)
def test_bad_input_is_a_clear_error(reply: bytes, problem: str) -> None:
    with pytest.raises(AdapterError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        DumpParser().parse(memoryview(reply), Dump(socket.AF_INET, PORTS, kernel_filtered=True))


def test_a_corrupt_length_inside_a_run_ends_the_run_and_is_an_error() -> None:
    good = b"".join(message(i) for i in range(20))
    bad = bytearray(message(20))
    struct.pack_into("=I", bad, 0, 5000)
    reply = good + bytes(bad) + b"".join(message(i) for i in range(21, 30)) + done()
    dump = Dump(socket.AF_INET, PORTS, kernel_filtered=True)
    with pytest.raises(AdapterError, match="malformed message \\(length 5000"):
        DumpParser().parse(memoryview(reply), dump)
    assert dump.connections == [expected(i) for i in range(20)], "the run before it was read"
