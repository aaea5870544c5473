"""What the samples of a shutdown teach about its inbound traffic, per stream and pod-wide.

The sampler folds each sample into a `LullTrack` (`fold`), pure: loop times in, a new track
out; sidecar/model/quiet.py decides on it. docs/quiesce.md explains both.

Traffic is followed per *stream*: one peer address on one local port. A stream's arrivals are
the latest received byte of each of its connections (tcp_info's last_data_recv), so a sample
sees at most one arrival per connection; the gaps measured between them can only be longer than
the real ones, which makes a learned window longer, never shorter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

from sidecar.model.traffic import TcpState, is_in_flight

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.model.traffic import TrafficPolicy, TrafficSample

#: (peer address, local port).
StreamKey = tuple[str, int]

#: A connection's arrival moved by less than this is the same arrival dated by a later sample
#: (tcp_info counts in jiffies, and a sample's own time jitters by its duration).
SAME_ARRIVAL_SECONDS = 0.01
#: Beyond this many streams (a pod called straight by thousands of clients) new peers share one
#: stream per port, which only makes their window more careful.
MAX_STREAMS = 4096


class Seen(NamedTuple):
    """One open connection as the latest sample saw it (a NamedTuple: thousands per sample)."""

    stream: StreamKey
    arrival_at: float | None
    idle: bool


@dataclass(frozen=True)
class Stream:
    """What the samples taught about one stream (or, as `LullTrack.pod`, about all of them)."""

    last_arrival_at: float | None = None
    #: Since when gaps could be seen: the first sample, or the stream's first arrival after it.
    history_from: float | None = None
    largest_gap_seconds: float = 0.0
    gaps: int = 0
    open: int = 0
    idle_open: int = 0
    #: Start of the latest sample interval in which one of its idle connections went away. Only
    #: the peer closes an idle connection: the proxy's drain closes one after a response.
    idle_closed_after: float | None = None
    #: When a sample first saw it gone: nothing open, an idle connection closed by the peer and
    #: no arrival since. Reset by its next arrival.
    departed_at: float | None = None

    def arrive(self, times: list[float], *, learn: bool) -> Stream:
        """More arrivals, in order; gaps before them are learned unless `learn` is false."""
        last, largest, gaps = self.last_arrival_at, self.largest_gap_seconds, self.gaps
        for at in times:
            if last is not None and at <= last:
                continue
            if last is not None and learn:
                largest, gaps = max(largest, at - last), gaps + 1
            last = at
        if last == self.last_arrival_at:
            return self
        return replace(
            self, last_arrival_at=last, largest_gap_seconds=largest, gaps=gaps, departed_at=None
        )


@dataclass(frozen=True)
class LullTrack:
    """Everything `decide` needs, folded sample by sample."""

    sampled_at: float | None = None
    has_timing: bool = True
    open: Mapping[int, Seen] = field(default_factory=dict)
    streams: Mapping[StreamKey, Stream] = field(default_factory=dict)
    #: Every arrival on every port, the proxy's connections to the app included.
    pod: Stream = field(default_factory=Stream)
    #: Whether any inbound connection or arrival was ever seen.
    seen_any: bool = False


def fold(track: LullTrack, sample: TrafficSample, policy: TrafficPolicy) -> LullTrack:
    """The track after one more sample."""
    first = track.sampled_at is None
    previous = sample.taken_at if track.sampled_at is None else track.sampled_at
    read = _read(track, sample, policy)
    idle_closed = {s.stream for k, s in track.open.items() if s.idle and k not in read.open}
    pod = track.pod.arrive(sorted(a for ts in read.arrivals.values() for a in ts), learn=not first)
    pod = _history(pod, sample.taken_at, first=first)
    streams = dict(track.streams)
    for key in set(streams) | set(read.counts):
        stream = streams.get(key) or Stream()
        times = read.arrivals.get(key)
        if times:
            stream = stream.arrive(sorted(times), learn=not first)
        stream = _history(stream, sample.taken_at, first=first)
        n_open, n_idle = read.counts.get(key, (0, 0))
        if (stream.open, stream.idle_open) != (n_open, n_idle):
            stream = replace(stream, open=n_open, idle_open=n_idle)
        if key in idle_closed:
            stream = replace(stream, idle_closed_after=previous)
        streams[key] = _departure(stream, pod, sample.taken_at)
    return LullTrack(
        sampled_at=sample.taken_at,
        has_timing=sample.has_timing,
        open=read.open,
        streams=streams,
        pod=pod,
        seen_any=track.seen_any or bool(read.open) or pod.last_arrival_at is not None,
    )


@dataclass
class _Read:
    """One sample's inbound connections, by stream."""

    open: dict[int, Seen] = field(default_factory=dict)
    arrivals: dict[StreamKey, list[float]] = field(default_factory=dict)
    #: stream -> (open, idle open)
    counts: dict[StreamKey, tuple[int, int]] = field(default_factory=dict)


def _read(track: LullTrack, sample: TrafficSample, policy: TrafficPolicy) -> _Read:
    read = _Read()
    ignored: dict[str, bool] = {}
    timing = sample.has_timing
    for conn in sample.connections:
        if conn.local_port not in policy.inbound_ports or conn.state != TcpState.ESTABLISHED:
            continue  # CLOSE_WAIT: the peer has closed it, so it counts as gone
        skip = ignored.get(conn.remote_ip)
        if skip is None:
            skip = ignored[conn.remote_ip] = policy.ignores(conn.remote_ip)
        if skip:
            continue
        before = track.open.get(conn.key)
        at = None
        if timing and conn.last_recv_ms is not None:
            at = sample.taken_at - conn.last_recv_ms / 1000
        if before is None:  # a new connection: its first byte, or its handshake
            key = _stream_key(track, conn.remote_ip, conn.local_port)
            arrival: float | None = sample.taken_at if at is None else at
        else:
            key = before.stream
            moved = at is not None and (
                before.arrival_at is None or at > before.arrival_at + SAME_ARRIVAL_SECONDS
            )
            arrival = at if moved else None
        idle = not is_in_flight(conn, has_timing=timing)
        latest = arrival if arrival is not None else (before.arrival_at if before else None)
        read.open[conn.key] = Seen(key, latest, idle)
        if arrival is not None:
            read.arrivals.setdefault(key, []).append(arrival)
        n_open, n_idle = read.counts.get(key, (0, 0))
        read.counts[key] = (n_open + 1, n_idle + idle)
    return read


def _history(stream: Stream, now: float, *, first: bool) -> Stream:
    """Gaps can be seen from the first sample on, or from a later stream's first arrival."""
    if stream.history_from is not None or stream.last_arrival_at is None:
        return stream
    return replace(stream, history_from=now if first else stream.last_arrival_at)


def _stream_key(track: LullTrack, ip: str, port: int) -> StreamKey:
    key = (ip, port)
    if key in track.streams or len(track.streams) < MAX_STREAMS:
        return key
    return ("*", port)


def _departure(stream: Stream, pod: Stream, now: float) -> Stream:
    """Mark the stream departed the first time the evidence holds, and keep the first date."""
    if departed(stream, pod):
        return stream if stream.departed_at is not None else replace(stream, departed_at=now)
    return replace(stream, departed_at=None) if stream.departed_at is not None else stream


def departed(stream: Stream, pod: Stream) -> bool:
    """The peer closed its idle connections, none is left open, and nothing arrived since.

    The pod's proxy closes a connection only after answering on it (EV3); a caller's Envoy
    closes its idle ones when the pod's removal reaches it (EV12).

    "Nothing" is pod-wide: a request on a connection opened and closed between two samples is
    still seen on the proxy's own connection to the app, and refutes the departure.
    """
    closed_after = stream.idle_closed_after
    if stream.open or closed_after is None:
        return False
    return pod.last_arrival_at is None or pod.last_arrival_at <= closed_after
