"""/proc/net/tcp rows: addresses, ports, states and queues decoded; junk skipped, never raised."""

from __future__ import annotations

import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sidecar.adapters.traffic import procnet
from sidecar.model.traffic import TcpState

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"  # noqa: E501 - the kernel's own header


def line(
    local: str, remote: str, state: str, queues: str = "00000000:00000000", inode: int = 4242
) -> str:
    tail = f"00:00000000 00000000  1000        0 {inode} 1 0 20 4 30 10 -1"
    return f"   0: {local} {remote} {state} {queues} {tail}\n"


def test_ipv4_rows_decode_addresses_ports_states_and_queues() -> None:
    text = (
        HEADER
        + line("0100007F:1F90", "0B00000A:C350", "01", "00000010:00000020")
        + line("00000000:1F90", "00000000:0000", "0A")
        + line("0100007F:1F90", "0100007F:C351", "06")
    )
    found = list(procnet.parse(text, frozenset({8080})))
    conns = [c for c, _ in found if c]
    assert [p for _, p in found if p] == [8080]
    assert len(conns) == 1  # TIME_WAIT is not a connection worth counting
    c = conns[0]
    assert (c.local_port, c.remote_ip, c.remote_port, c.state) == (
        8080,
        "10.0.0.11",
        50000,
        TcpState.ESTABLISHED,
    )
    assert (c.tx_queue, c.rx_queue, c.key) == (0x10, 0x20, 4242)


def test_ipv4_mapped_ipv6_rows_are_normalised_to_ipv4() -> None:
    mapped = "0000000000000000FFFF00000B00000A"
    text = HEADER + line("00000000000000000000000000000000:1F90", f"{mapped}:C350", "08")
    ((conn, _),) = procnet.parse(text, frozenset({8080}))
    assert conn is not None
    assert (conn.remote_ip, conn.state) == ("10.0.0.11", TcpState.CLOSE_WAIT)


def test_other_ports_and_garbage_lines_are_skipped() -> None:
    text = (
        HEADER
        + line("0100007F:0050", "0100007F:C350", "01")
        + "garbage\n"
        + "   1: zz:zz yy:yy 01 a b c d e f\n"
    )
    assert list(procnet.parse(text, frozenset({8080}))) == []


@given(st.text(max_size=300))
def test_parse_never_raises_on_any_text(text: str) -> None:
    ports = frozenset(range(1, 100))
    for conn, port in procnet.parse(HEADER + text, ports):
        # Whatever junk parses yields either a connection or a listening port, on a watched port.
        assert (conn is None) != (port is None)
        assert (conn.local_port if conn is not None else port) in ports


def test_read_sees_a_real_loopback_connection_in_both_tables(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::", 0))  # dual stack: the IPv4 client lands in tcp6 as ::ffff:127.0.0.1
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                listening, conns = procnet.read(frozenset({port}))
                assert listening == {port}
                assert [(c.local_port, c.remote_ip, c.remote_port) for c in conns] == [
                    (port, "127.0.0.1", client.getsockname()[1])
                ]
    assert procnet.read(frozenset({port}), tmp_path) == (
        frozenset(),
        (),
    )  # no tables: nothing, no crash
