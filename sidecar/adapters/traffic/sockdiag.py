"""TCP sockets with tcp_info through raw netlink sock_diag, filtered by port in the kernel.

This is what `ss -ti` reads. It needs no package and no capability. The request asks for what a
sample uses and no more: the three states the model reads (ESTABLISHED, CLOSE_WAIT, LISTEN),
one extension (INET_DIAG_INFO, for tcp_info), and the watched ports as inet_diag bytecode, so
the kernel sends only the sockets we watch. The replies are parsed a run of equal messages at a
time (`inetdiag`), which keeps a sample close to the cost of the dump itself when the pod holds
tens of thousands of sockets (docs/benchmarks.md).

Request layouts: `struct inet_diag_req_v2` and the bytecode ops in
https://github.com/torvalds/linux/blob/master/include/uapi/linux/inet_diag.h ; the bytecode's
jump rules in `inet_diag_bc_run` in https://github.com/torvalds/linux/blob/master/net/ipv4/inet_diag.c
"""

from __future__ import annotations

import gc
import socket
import struct
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sidecar.adapters.traffic.inetdiag import (
    INET_DIAG_INFO,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    Dump,
    DumpParser,
)
from sidecar.errors import AdapterError
from sidecar.model.traffic import Connection, TcpState

__all__ = ["NLMSGHDR", "NLMSG_DONE", "SockDiag", "dump_request", "port_filter"]

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ = 11
_BC_OP = struct.Struct("=BBH")

_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 with an all-zero inet_diag_sockid
_RTATTR = struct.Struct("=HH")

_STATES = (1 << TcpState.ESTABLISHED) | (1 << TcpState.CLOSE_WAIT) | (1 << TcpState.LISTEN)


def port_filter(ports: Iterable[int]) -> bytes:
    """inet_diag bytecode accepting sockets whose local port is any of `ports`.

    The kernel runs ops in sequence: on a match it jumps `yes` bytes, otherwise `no` bytes;
    landing exactly at the end accepts, jumping past it (end + 4) rejects. Its audit
    (`inet_diag_bc_audit`) follows the `yes` jumps from the start and wants every `no` to land on
    that chain, so each test falls through on a match (`yes` = 8: S_EQ and the op carrying the
    port) and the tests are joined as `ss` joins an "or": test; JMP to the end; next test. A
    failed test's `no` (12) skips its own 8 bytes and the JMP, onto the next test; the last
    one's lands past the end.
    """
    ordered = sorted(set(ports))
    code = bytearray()
    for index, port in enumerate(ordered):
        code += _BC_OP.pack(INET_DIAG_BC_S_EQ, 8, 12) + _BC_OP.pack(0, 0, port)
        after = len(ordered) - 1 - index
        if after:
            rest = 8 * after + 4 * (after - 1)
            code += _BC_OP.pack(INET_DIAG_BC_JMP, 4, rest + 4)
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


#: The receive buffer: datagrams are appended until less than _ROOM is left, then parsed as
#: one chunk, so the per-chunk set-up is paid once for about thirty datagrams. A dump datagram
#: is at most 32 KiB (netlink caps its dump buffers there, `netlink_recvmsg` in
#: https://github.com/torvalds/linux/blob/master/net/netlink/af_netlink.c ).
CHUNK = 1 << 20
_ROOM = 64 << 10
#: NLMSG_DONE without extended ack (never asked for): the header and the dump's result.
_DONE_SIZE = NLMSGHDR.size + 4


class SockDiag:
    """One netlink socket, reused across samples; blocking, so call it from a worker thread."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._kernel_filter = True
        self._parser = DumpParser()
        # Untouched pages of a fresh bytearray are not resident: a small dump costs little RSS.
        self._buffer = bytearray(CHUNK)

    def close(self) -> None:
        """Release the netlink socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, ports: frozenset[int]) -> tuple[frozenset[int], tuple[Connection, ...]]:
        """Listening ports and established/close-wait connections on `ports`, both families."""
        listening: set[int] = set()
        connections: list[Connection] = []
        with _collected_once():
            self._read(ports, listening, connections)
        return frozenset(listening), tuple(connections)

    def _read(
        self, ports: frozenset[int], listening: set[int], connections: list[Connection]
    ) -> None:
        for family in (socket.AF_INET, socket.AF_INET6):
            dump = Dump(family, ports, self._kernel_filter, listening, connections)
            try:
                self._dump(dump)
            except AdapterError as e:
                if not self._kernel_filter or "EINVAL" not in str(e):
                    raise
                # An old kernel without S_EQ rejects the bytecode: filter here instead.
                self._kernel_filter = False
                listening.clear()
                connections.clear()
                self._read(ports, listening, connections)
                return

    def _socket(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            except OSError as e:
                raise AdapterError(f"netlink sock_diag is not available: {e.strerror}") from e
        return self._sock

    def _dump(self, dump: Dump) -> None:
        sock = self._socket()
        view = memoryview(self._buffer)
        try:
            sock.send(dump_request(dump.family, dump.ports, kernel_filter=self._kernel_filter))
            self._receive(sock, view, dump)
        except OSError as e:
            self.close()
            raise AdapterError(f"sock_diag dump failed: {e.strerror}") from e
        except AdapterError:
            self.close()
            raise
        finally:
            view.release()

    def _receive(self, sock: socket.socket, view: memoryview, dump: Dump) -> None:
        filled = 0
        while True:
            # MSG_TRUNC: the datagram's real size, so one too big is an error, not a cut.
            size = sock.recv_into(view[filled:], 0, socket.MSG_TRUNC)
            done = _last_datagram(view, filled, size)
            filled += size
            if done or len(view) - filled < _ROOM:
                if self._parser.parse(view[:filled], dump):
                    return
                if done:
                    raise AdapterError("sock_diag dump ended without NLMSG_DONE")
                filled = 0


@contextmanager
def _collected_once() -> Iterator[None]:
    """The cyclic collector held off while a sample builds its tuples, then one young pass.

    A sample is a burst of up to tens of thousands of Connection tuples that all live until
    the next sample. Left alone, the collector runs every 700 of them and each run only
    promotes them to an older generation, whose runs then walk them again (and the whole heap
    now and then): on 10 000 connections that was about as much time as the parse. One young
    collection at the end, if one is due, does the walk once, here, where the sample pays for
    it. The switch
    is process-wide but only for the few milliseconds of a sample, and a collector that
    someone else turned off is left off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if gc.get_count()[0] > gc.get_threshold()[0]:
            gc.collect(0)


def _last_datagram(view: memoryview, start: int, size: int) -> bool:
    """Whether this datagram ends the dump: an error reply, or NLMSG_DONE last in it.

    Only the first and the last 20 bytes are looked at; the parser then checks that the
    messages really end there.
    """
    if size < NLMSGHDR.size:
        raise AdapterError(f"sock_diag sent a datagram of {size} bytes, shorter than a header")
    if size > len(view) - start:
        raise AdapterError(f"sock_diag sent a datagram of {size} bytes, larger than the buffer")
    if NLMSGHDR.unpack_from(view, start)[1] in (NLMSG_DONE, NLMSG_ERROR):
        return True
    if size < _DONE_SIZE:
        return False
    length, kind = NLMSGHDR.unpack_from(view, start + size - _DONE_SIZE)[:2]
    return bool(length == _DONE_SIZE and kind == NLMSG_DONE)
