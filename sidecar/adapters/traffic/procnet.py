"""TCP sockets from /proc/net/tcp and tcp6: the fallback source, no per-socket timing."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.model.traffic import Connection, TcpState

if TYPE_CHECKING:
    from collections.abc import Iterator

# Rows in these states are not connections worth counting: LISTEN is reported apart, and
# TIME_WAIT rows have no process behind them (uid 0, inode 0) and linger for 60 s.
_SKIPPED = {TcpState.TIME_WAIT}


def _address(hex_address: str) -> str:
    """Decode the kernel's address column: 32-bit words in host byte order (x86: little end)."""
    raw = bytes.fromhex(hex_address)
    # Each 4-byte word is printed as a host-order integer; its memory bytes are network order.
    words = b"".join(
        int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder)
        for i in range(0, len(raw), 4)
    )
    if len(words) == 4:
        return socket.inet_ntop(socket.AF_INET, words)
    address = ipaddress.IPv6Address(words)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def parse(text: str, ports: frozenset[int]) -> Iterator[tuple[Connection | None, int | None]]:
    """Yield (connection, None) for sockets on `ports`, (None, port) for listening ones.

    Lines that do not parse are skipped rather than fatal: the format is the kernel's, and a
    sample must never crash the shutdown.
    """
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, remote, state_hex, queues = fields[1], fields[2], fields[3], fields[4]
            local_port = int(local.rsplit(":", 1)[1], 16)
            if local_port not in ports:
                continue
            state = int(state_hex, 16)
            if state == TcpState.LISTEN:
                yield None, local_port
                continue
            if state in _SKIPPED:
                continue
            remote_hex, remote_port_hex = remote.rsplit(":", 1)
            tx_hex, rx_hex = queues.split(":")
            yield (
                Connection(
                    local_port=local_port,
                    remote_ip=_address(remote_hex),
                    remote_port=int(remote_port_hex, 16),
                    state=state,
                    key=int(fields[9]),
                    rx_queue=int(rx_hex, 16),
                    tx_queue=int(tx_hex, 16),
                ),
                None,
            )
        except (ValueError, IndexError):
            continue


def read(
    ports: frozenset[int], root: Path = Path("/proc/net")
) -> tuple[frozenset[int], tuple[Connection, ...]]:
    """Listening ports and connections on `ports`, from both address families' tables.

    A dual-stack listener puts IPv4 clients in tcp6 as ::ffff:a.b.c.d, so both files are read.
    """
    listening: set[int] = set()
    connections: list[Connection] = []
    for name in ("tcp", "tcp6"):
        try:
            text = (root / name).read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            continue  # no IPv6 in this kernel or namespace
        for conn, port in parse(text, ports):
            if conn is not None:
                connections.append(conn)
            elif port is not None:
                listening.add(port)
    return frozenset(listening), tuple(connections)
