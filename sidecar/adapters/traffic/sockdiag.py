"""TCP sockets with tcp_info through raw netlink sock_diag, filtered by port in the kernel.

This is what `ss -ti` reads. It needs no package and no capability, and with the port filter
compiled to inet_diag bytecode the kernel sends only the sockets we watch, which keeps a sample
cheap when the pod holds tens of thousands of sockets (docs/benchmarks.md).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import TYPE_CHECKING

from sidecar.errors import AdapterError
from sidecar.model.traffic import Connection, TcpState

if TYPE_CHECKING:
    from collections.abc import Iterable

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_INFO = 2
INET_DIAG_BC_S_EQ = 11
_BC_OP = struct.Struct("=BBH")

NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 with an all-zero inet_diag_sockid
_RTATTR = struct.Struct("=HH")
# inet_diag_msg: family, state, (timer, retrans), sport, dport (both big-endian), src, dst,
# (if), cookie, (expires), rqueue, wqueue, (uid), inode.
_MSG = struct.Struct("=BB2xHH16s16s4xQ4xII4xI")
# tcp_info (include/uapi/linux/tcp.h): tcpi_last_data_sent at byte 44, tcpi_last_data_recv at 52,
# tcpi_bytes_acked at 120 and tcpi_bytes_received at 128 (both since Linux 4.1).
_TCP_TIMES = struct.Struct("=44xI4xI")
_TCP_INFO = struct.Struct("=44xI4xI64xQQ")
_NLERR = struct.Struct("=i")

_STATES = (1 << TcpState.ESTABLISHED) | (1 << TcpState.CLOSE_WAIT) | (1 << TcpState.LISTEN)
_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


def port_filter(ports: Iterable[int]) -> bytes:
    """inet_diag bytecode accepting sockets whose local port is any of `ports`.

    The kernel runs ops in sequence: on a match it jumps `yes` bytes, otherwise `no` bytes.
    Landing exactly at the end accepts; jumping past it (end + 4) rejects. Each S_EQ test is two
    ops (8 bytes), the second carrying the port in its `no` field.
    """
    ordered = sorted(set(ports))
    total = 8 * len(ordered)
    code = bytearray()
    for index, port in enumerate(ordered):
        remaining = total - 8 * index
        no = 8 if index < len(ordered) - 1 else 12
        code += _BC_OP.pack(INET_DIAG_BC_S_EQ, remaining, no) + _BC_OP.pack(0, 0, port)
    return bytes(code)


def dump_request(family: int, ports: frozenset[int], *, kernel_filter: bool) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request: our states, tcp_info, and the port filter if asked."""
    body = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), _STATES)
    if kernel_filter and ports:
        code = port_filter(ports)
        body += _RTATTR.pack(_RTATTR.size + len(code), INET_DIAG_REQ_BYTECODE) + code
    header = NLMSGHDR.pack(
        NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    return header + body


class SockDiag:
    """One netlink socket, reused across samples; blocking, so call it from a worker thread."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._kernel_filter = True
        self._peers: dict[bytes, str] = {}
        # One receive buffer for every sample; the kernel fills datagrams up to its size.
        self._buffer = bytearray(1 << 20)

    def close(self) -> None:
        """Release the netlink socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, ports: frozenset[int]) -> tuple[frozenset[int], tuple[Connection, ...]]:
        """Listening ports and established/close-wait connections on `ports`, both families."""
        listening: set[int] = set()
        connections: list[Connection] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._dump(family, ports, listening, connections)
            except AdapterError as e:
                if not self._kernel_filter or "EINVAL" not in str(e):
                    raise
                # An old kernel without S_EQ rejects the bytecode: filter here instead.
                self._kernel_filter = False
                listening.clear()
                connections.clear()
                return self.read(ports)
        return frozenset(listening), tuple(connections)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            except OSError as e:
                raise AdapterError(f"netlink sock_diag is not available: {e.strerror}") from e
        return self._sock

    def _peer(self, family: int, raw: bytes) -> str:
        text = self._peers.get(raw)
        if text is None:
            if family == socket.AF_INET or raw.startswith(_MAPPED_PREFIX):
                text = socket.inet_ntop(
                    socket.AF_INET, raw[12:16] if family != socket.AF_INET else raw[:4]
                )
            else:
                text = socket.inet_ntop(socket.AF_INET6, raw)
            if len(self._peers) > 4096:
                self._peers.clear()
            self._peers[raw] = text
        return text

    def _dump(
        self, family: int, ports: frozenset[int], listening: set[int], out: list[Connection]
    ) -> None:
        sock = self._socket()
        try:
            sock.send(dump_request(family, ports, kernel_filter=self._kernel_filter))
            view = memoryview(self._buffer)
            while True:
                size = sock.recv_into(self._buffer)
                if self._messages(view[:size], ports, listening, out):
                    return
        except OSError as e:
            self.close()
            raise AdapterError(f"sock_diag dump failed: {e.strerror}") from e
        except AdapterError:
            self.close()
            raise

    def _messages(
        self, data: memoryview, ports: frozenset[int], listening: set[int], out: list[Connection]
    ) -> bool:
        """Parse one datagram of the dump; True once the kernel says it is done."""
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind = NLMSGHDR.unpack_from(data, offset)[:2]
            if length < NLMSGHDR.size:
                raise AdapterError(f"sock_diag sent a malformed message (length {length})")
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR:
                code = -_NLERR.unpack_from(data, offset + NLMSGHDR.size)[0]
                raise AdapterError(
                    f"sock_diag refused the request: {errno.errorcode.get(code, code)}"
                )
            body = offset + NLMSGHDR.size
            fam, state, sport, dport, _, dst, cookie, rqueue, wqueue, _ = _MSG.unpack_from(
                data, body
            )
            port = socket.ntohs(sport)
            if port in ports:
                if state == TcpState.LISTEN:
                    listening.add(port)
                else:
                    info = _tcp_info(data, body + _MSG.size, offset + length)
                    peer = self._peer(fam, dst)
                    out.append(
                        Connection(
                            port, peer, socket.ntohs(dport), state, cookie, rqueue, wqueue, *info
                        )
                    )
            offset += (length + 3) & ~3
        return False


_NO_INFO: tuple[None, None, None, None] = (None, None, None, None)


def _tcp_info(
    data: memoryview, attr: int, end: int
) -> tuple[int | None, int | None, int | None, int | None]:
    """(last receive ms, last send ms, bytes acked, bytes received) from INET_DIAG_INFO."""
    # Fast path: the kernel puts INET_DIAG_INFO first when it is the only extension asked for.
    if attr + _RTATTR.size + _TCP_INFO.size <= end:
        attr_len, attr_type = _RTATTR.unpack_from(data, attr)
        if attr_type == INET_DIAG_INFO and attr_len - _RTATTR.size >= _TCP_INFO.size:
            sent, recv, acked, received = _TCP_INFO.unpack_from(data, attr + _RTATTR.size)
            return recv, sent, acked, received
    while attr + _RTATTR.size <= end:
        attr_len, attr_type = _RTATTR.unpack_from(data, attr)
        if attr_len < _RTATTR.size:
            break
        if attr_type == INET_DIAG_INFO:
            size = attr_len - _RTATTR.size
            if size >= _TCP_INFO.size:
                sent, recv, acked, received = _TCP_INFO.unpack_from(data, attr + _RTATTR.size)
                return recv, sent, acked, received
            if size >= _TCP_TIMES.size:
                sent, recv = _TCP_TIMES.unpack_from(data, attr + _RTATTR.size)
                return recv, sent, None, None
            break
        attr += (attr_len + 3) & ~3
    return _NO_INFO
