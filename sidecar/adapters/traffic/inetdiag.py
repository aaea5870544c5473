"""inet_diag dump messages to `Connection` tuples, a column at a time where the messages agree.

A dump is thousands of messages of the same length with the same attributes (header, then
`struct inet_diag_msg`, then rtattrs). Such a run is a table with a fixed stride: every field is
a strided memoryview at a fixed offset, unpacked in C, and the tuples are zipped together, so
Python does no work per message beyond building the tuple. Whatever does not fit a run (the
few listeners an IPv6 dump puts first with an extra attribute, a socket with a ULP, a short
run) goes through the message-by-message parser, which gives the same tuples.

Layouts, from the kernel's public headers:

- `struct nlmsghdr` (16 bytes): https://github.com/torvalds/linux/blob/master/include/uapi/linux/netlink.h
- `struct inet_diag_msg` (72 bytes), `struct inet_diag_sockid`, the INET_DIAG_* attribute types:
  https://github.com/torvalds/linux/blob/master/include/uapi/linux/inet_diag.h
- `struct tcp_info`: https://github.com/torvalds/linux/blob/master/include/uapi/linux/tcp.h
- which attributes each socket gets (`inet_diag_msg_attrs_fill`, `inet_sk_diag_fill`):
  https://github.com/torvalds/linux/blob/master/net/ipv4/inet_diag.c
"""

from __future__ import annotations

import errno
import operator
import socket
import struct
import sys
from array import array
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import TYPE_CHECKING, Literal, NamedTuple

from sidecar.errors import AdapterError
from sidecar.model.traffic import Connection, TcpState

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

NLMSG_ERROR = 2
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_INFO = 2

#: nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid.
NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
_NLERR = struct.Struct("=i")
#: inet_diag_msg after the header: family, state, (timer, retrans), sport, dport (both
#: big-endian), (src), dst, (if), cookie, (expires), rqueue, wqueue, (uid, inode).
_MSG = struct.Struct("=BB2xHH16x16s4xQ4xII8x")
_DIAG_MSG_SIZE = 72
_ATTRS = NLMSGHDR.size + _DIAG_MSG_SIZE

# Offsets from the start of a message (nlmsghdr included) of the fields a Connection needs.
_STATE = 17
_SPORT = 20
_DPORT = 22
_DST = 40
_COOKIE = 60
_RQUEUE = 72
_WQUEUE = 76
# Inside tcp_info: tcpi_last_data_sent, tcpi_last_data_recv (u32 ms), tcpi_bytes_acked,
# tcpi_bytes_received (u64, since Linux 4.1).
_LAST_SENT = 44
_LAST_RECV = 52
_BYTES_ACKED = 120
_BYTES_RECEIVED = 128
_TCP_TIMES = struct.Struct("=44xI4xI")
_TCP_INFO = struct.Struct("=44xI4xI64xQQ")

#: Below this many messages a run costs more to set up than to parse message by message.
MIN_RUN = 8
#: Distinct peers remembered as text; more than this and the cache starts over.
PEER_CACHE = 16384

_LITTLE = sys.byteorder == "little"
_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"
_ZERO_INFO: tuple[None, None, None, None] = (None, None, None, None)
_new = tuple.__new__


class Layout(NamedTuple):
    """Where the fields are in every message of a run."""

    length: int
    #: (offset, 32-bit word) pairs every message of the run carries: the length, type and
    #: flags, and each rtattr header. Matching them all proves the attribute chain is the same.
    signature: tuple[tuple[int, int], ...]
    #: Offset of the tcp_info payload and its size; -1 and 0 without INET_DIAG_INFO.
    info: int
    info_size: int


def learn(data: memoryview, start: int, end: int) -> Layout:
    """The layout of the message at `start`; a clear error if it does not fit in `end`."""
    if start + NLMSGHDR.size > end:
        raise AdapterError(f"sock_diag sent a truncated message header ({end - start} bytes)")
    length, kind, flags = NLMSGHDR.unpack_from(data, start)[:3]
    if length < _ATTRS or start + length > end:
        raise AdapterError(
            f"sock_diag sent a malformed message (length {length}, type {kind},"
            f" {end - start} bytes left)"
        )
    signature = [(0, length), (4, kind | flags << 16)]
    info, info_size = -1, 0
    attr = _ATTRS
    while attr + _RTATTR.size <= length:
        attr_len, attr_type = _RTATTR.unpack_from(data, start + attr)
        if attr_len < _RTATTR.size or attr + attr_len > length:
            raise AdapterError(f"sock_diag sent a malformed attribute (length {attr_len})")
        signature.append((attr, attr_len | attr_type << 16))
        if attr_type == INET_DIAG_INFO:
            info, info_size = attr + _RTATTR.size, attr_len - _RTATTR.size
        attr += (attr_len + 3) & ~3
    return Layout(length, tuple(signature), info, info_size)


def _column(
    data: memoryview, start: int, count: int, stride: int, offset: int, fmt: Literal["H", "I", "Q"]
) -> memoryview:
    """Field `offset` of `count` messages `stride` bytes apart, as a strided native view."""
    size = struct.calcsize(fmt)
    first = start + offset
    return data[first : first + (count - 1) * stride + size].cast(fmt)[:: stride // size]


def _first_mismatch(got: bytes, want: bytes) -> int:
    """Byte index of the first difference between two equally long byte strings, or -1."""
    if got == want:
        return -1
    diff = int.from_bytes(got, "little") ^ int.from_bytes(want, "little")
    return ((diff & -diff).bit_length() - 1) // 8


def run_length(data: memoryview, start: int, end: int, layout: Layout) -> int:
    """How many messages from `start` on share `layout` (at least the one it was learned from)."""
    stride = layout.length
    count = (end - start) // stride
    if stride % 4 or count <= 1:
        return 1
    for offset, word in layout.signature:
        want = word.to_bytes(4, sys.byteorder) * count
        index = _first_mismatch(_column(data, start, count, stride, offset, "I").tobytes(), want)
        if index >= 0:
            count = index // 4
            if count <= 1:
                return 1
    return count


def _constant(view: memoryview, count: int) -> bool:
    """Whether every item of a strided view equals the first (compared in C, as bytes)."""
    raw = view.tobytes()
    return raw == raw[: len(raw) // count] * count


def _u16_be(view: memoryview) -> array[int]:
    values = array("H", view.tobytes())
    if _LITTLE:
        values.byteswap()
    return values


def _u64(data: memoryview, start: int, count: int, stride: int, offset: int) -> Iterable[int]:
    if stride % 8 == 0:
        return _column(data, start, count, stride, offset, "Q")
    low = _column(data, start, count, stride, offset, "I")
    high = _column(data, start, count, stride, offset + 4, "I")
    if not _LITTLE:
        low, high = high, low
    if not any(high.tobytes()):
        return low
    return map(operator.or_, low, map(operator.lshift, high, repeat(32)))


class _Peers4(dict[int, str]):
    """IPv4 peers by the native reading of their four address bytes."""

    def __missing__(self, key: int) -> str:
        if len(self) >= PEER_CACHE:
            self.clear()
        text = self[key] = socket.inet_ntop(socket.AF_INET, key.to_bytes(4, sys.byteorder))
        return text


class _Peers6(dict[tuple[int, int], str]):
    """IPv6 peers by the native reading of their two 8-byte halves; v4-mapped ones as IPv4."""

    def __missing__(self, key: tuple[int, int]) -> str:
        if len(self) >= PEER_CACHE:
            self.clear()
        raw = key[0].to_bytes(8, sys.byteorder) + key[1].to_bytes(8, sys.byteorder)
        if raw.startswith(_MAPPED_PREFIX):
            text = socket.inet_ntop(socket.AF_INET, raw[12:])
        else:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        self[key] = text
        return text


_KEY6 = struct.Struct("=QQ")
_KEY4 = struct.Struct("=I")


@dataclass
class Dump:
    """One family's dump: what was asked, and what came back so far."""

    family: int
    ports: frozenset[int]
    #: Whether the kernel ran the port filter; if not, every socket's port is checked here.
    kernel_filtered: bool
    listening: set[int] = field(default_factory=set)
    connections: list[Connection] = field(default_factory=list)


class DumpParser:
    """Turns the messages of inet_diag dumps into listening ports and connections.

    It keeps the peers' text across samples: most connections come from a few addresses.
    """

    def __init__(self) -> None:
        self._peers4 = _Peers4()
        self._peers6 = _Peers6()

    def parse(self, data: memoryview, dump: Dump) -> bool:
        """Parse the whole messages in `data` into `dump`; True at NLMSG_DONE.

        Bad input (a short or inconsistent message) raises AdapterError naming it.
        """
        end = len(data)
        offset = 0
        while offset < end:
            if offset + NLMSGHDR.size > end:
                raise AdapterError(
                    f"sock_diag sent a truncated message header ({end - offset} bytes)"
                )
            length, kind = NLMSGHDR.unpack_from(data, offset)[:2]
            if kind == NLMSG_DONE:
                _check_done(data, offset, length, end)
                return True
            if kind == NLMSG_ERROR:
                raise _refused(data, offset, end)
            if kind != SOCK_DIAG_BY_FAMILY:
                raise AdapterError(f"sock_diag sent an unexpected message type {kind}")
            layout = learn(data, offset, end)
            count = run_length(data, offset, end, layout)
            if count >= MIN_RUN:
                self._run(data, offset, count, layout, dump)
                offset += count * layout.length
            else:
                self._one(data, offset, layout, dump)
                offset += (length + 3) & ~3
        return False

    def _run(self, data: memoryview, start: int, count: int, layout: Layout, dump: Dump) -> None:
        stride = layout.length
        last = (count - 1) * stride
        states = data[start + _STATE : start + _STATE + last + 1 : stride].tobytes()
        local_view = _column(data, start, count, stride, _SPORT, "H")
        local = _u16_be(local_view)
        # One watched port, and (behind a mesh proxy) one peer, are the common case: a field
        # equal in every message of the run is repeated, not unpacked per message.
        local_ports: Iterable[int] = local
        if _constant(local_view, count):
            local_ports = repeat(local[0])
        remote = _u16_be(_column(data, start, count, stride, _DPORT, "H"))
        peers = self._peers(data, start, count, stride, dump.family)
        cookies = _u64(data, start, count, stride, _COOKIE)
        rqueue = _column(data, start, count, stride, _RQUEUE, "I")
        wqueue = _column(data, start, count, stride, _WQUEUE, "I")
        info, size = layout.info, layout.info_size
        recv: Iterable[int | None] = repeat(None)
        sent: Iterable[int | None] = repeat(None)
        acked: Iterable[int | None] = repeat(None)
        received: Iterable[int | None] = repeat(None)
        if size >= _TCP_TIMES.size:
            recv = _column(data, start, count, stride, info + _LAST_RECV, "I")
            sent = _column(data, start, count, stride, info + _LAST_SENT, "I")
        if size >= _TCP_INFO.size:
            acked = _u64(data, start, count, stride, info + _BYTES_ACKED)
            received = _u64(data, start, count, stride, info + _BYTES_RECEIVED)
        fields = zip(  # noqa: B905 - the repeat(None) columns are endless on purpose
            local_ports, peers, remote, states, cookies, rqueue, wqueue, recv, sent, acked, received
        )
        rows = map(_new, repeat(Connection), fields)
        if not dump.kernel_filtered:
            keep = []
            for state, port in zip(states, local, strict=True):
                watched = port in dump.ports
                if watched and state == TcpState.LISTEN:
                    dump.listening.add(port)
                keep.append(watched and state != TcpState.LISTEN)
            dump.connections.extend(compress(rows, keep))
            return
        index = states.find(TcpState.LISTEN)
        if index < 0:
            dump.connections.extend(rows)
            return
        # The kernel sends a family's listeners first: a handful, found without a loop over all.
        keep_bytes = bytearray(b"\1") * count
        while index >= 0:
            dump.listening.add(local[index])
            keep_bytes[index] = 0
            index = states.find(TcpState.LISTEN, index + 1)
        dump.connections.extend(compress(rows, keep_bytes))

    def _peers(
        self, data: memoryview, start: int, count: int, stride: int, family: int
    ) -> Iterator[str]:
        """The peers' text, from the cache, keyed by the native reading of the address."""
        if family == socket.AF_INET:
            address = _column(data, start, count, stride, _DST, "I")
            if _constant(address, count):
                return repeat(self._peers4[address[0]], count)
            return map(self._peers4.__getitem__, address)
        words = [_column(data, start, count, stride, _DST + 4 * i, "I") for i in range(4)]
        if all(_constant(word, count) for word in words):
            key = _KEY6.unpack(b"".join(word[:1].tobytes() for word in words))
            return repeat(self._peers6[key], count)
        halves = zip(
            _u64(data, start, count, stride, _DST),
            _u64(data, start, count, stride, _DST + 8),
            strict=True,
        )
        return map(self._peers6.__getitem__, halves)

    def _one(self, data: memoryview, start: int, layout: Layout, dump: Dump) -> None:
        _, state, sport, dport, dst, cookie, rqueue, wqueue = _MSG.unpack_from(
            data, start + NLMSGHDR.size
        )
        port = socket.ntohs(sport)
        if port not in dump.ports:
            return
        if state == TcpState.LISTEN:
            dump.listening.add(port)
            return
        if dump.family == socket.AF_INET:
            peer = self._peers4[_KEY4.unpack_from(dst)[0]]
        else:
            peer = self._peers6[_KEY6.unpack(dst)]
        info: tuple[int | None, int | None, int | None, int | None] = _ZERO_INFO
        if layout.info > 0:
            info = _tcp_info(data, start + layout.info, layout.info_size)
        dump.connections.append(
            Connection(port, peer, socket.ntohs(dport), state, cookie, rqueue, wqueue, *info)
        )


def _tcp_info(
    data: memoryview, at: int, size: int
) -> tuple[int | None, int | None, int | None, int | None]:
    """(last receive ms, last send ms, bytes acked, bytes received) from INET_DIAG_INFO."""
    if size >= _TCP_INFO.size:
        sent, recv, acked, received = _TCP_INFO.unpack_from(data, at)
        return recv, sent, acked, received
    if size >= _TCP_TIMES.size:
        sent, recv = _TCP_TIMES.unpack_from(data, at)
        return recv, sent, None, None
    return _ZERO_INFO


def _check_done(data: memoryview, offset: int, length: int, end: int) -> None:
    """NLMSG_DONE carries the dump's own result: an error here means the dump was cut short."""
    if length >= NLMSGHDR.size + _NLERR.size and offset + length <= end:
        code = _NLERR.unpack_from(data, offset + NLMSGHDR.size)[0]
        if code < 0:
            raise AdapterError(f"sock_diag dump ended with {errno.errorcode.get(-code, -code)}")


def _refused(data: memoryview, offset: int, end: int) -> AdapterError:
    if offset + NLMSGHDR.size + _NLERR.size > end:
        return AdapterError("sock_diag sent a truncated error message")
    code = -_NLERR.unpack_from(data, offset + NLMSGHDR.size)[0]
    return AdapterError(f"sock_diag refused the request: {errno.errorcode.get(code, code)}")
