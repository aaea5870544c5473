"""What the samples of a shutdown teach about its inbound traffic, per stream and pod-wide.

The sampler folds each sample into a `LullTrack` (`fold`), pure: loop times in, a new track
out; sidecar/model/quiet.py decides on it. docs/quiesce.md explains both.

Traffic is followed per *stream*: one peer address on one local port. A stream's arrivals are
the latest received byte of each of its connections (tcp_info's last_data_recv), so a sample
sees at most one arrival per connection; the gaps measured between them can only be longer than
the real ones, which makes a learned window longer, never shorter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from sidecar.model.stream import Stream, history, step
from sidecar.model.traffic import TcpState, is_in_flight

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.model.traffic import TrafficPolicy, TrafficSample

#: (peer address, local port).
StreamKey = tuple[str, int]

#: A connection's arrival moved by less than this is the same arrival dated by a later sample
#: (tcp_info counts in jiffies, and a sample's own time jitters by its duration).
SAME_ARRIVAL_SECONDS = 0.01
#: A busy kept connection's close counts as its caller leaving only if the connection is older
#: than this: an Envoy's pool to a host lives long, while a client's session per batch, an
#: upload on its own connection or a renewal under a request cap is young when it closes.
KEPT_AGE_SECONDS = 2.0
#: Beyond this many streams (a pod called straight by thousands of clients) new peers share one
#: stream per port, which only makes their window more careful.
MAX_STREAMS = 4096
#: An arrival on one port that another port's arrival dates within this is the same request
#: passed on: a meshed pod's proxy forwards to the app within a millisecond or so, and tcp_info
#: counts in jiffies. A coincidence only makes an arrival unexplained, which errs long.
EXPLAINED_SECONDS = 0.02


class Seen(NamedTuple):
    """One open connection as the latest sample saw it (a NamedTuple: thousands per sample)."""

    stream: StreamKey
    arrival_at: float | None
    idle: bool
    #: It carried a request after its first one: a kept (keep-alive) connection. A connection
    #: per request never is, so its close says nothing about its caller.
    reused: bool = False
    #: It had received a request when seen (bytes in), not only its handshake.
    asked: bool = False
    #: When a sample first saw it; -inf when it was open before the sampler started.
    since: float = -math.inf


@dataclass(frozen=True)
class LullTrack:
    """Everything `decide` needs, folded sample by sample."""

    sampled_at: float | None = None
    #: The sample before it: a close first seen in the latest sample happened after this.
    previous_at: float | None = None
    has_timing: bool = True
    open: Mapping[int, Seen] = field(default_factory=dict)
    #: Half-closed connections (CLOSE_WAIT): the request the peer sent before its FIN is an
    #: arrival, but the peer has closed, so the connection is not open.
    closing: Mapping[int, Seen] = field(default_factory=dict)
    streams: Mapping[StreamKey, Stream] = field(default_factory=dict)
    #: Every arrival on every port, the proxy's connections to the app included.
    pod: Stream = field(default_factory=Stream)
    #: Per local port, the arrivals no arrival on another port explains: on an app port behind
    #: the pod's proxy, requests from callers its entry ports never showed (short connections
    #: opened and closed between two samples).
    unexplained: Mapping[int, Stream] = field(default_factory=dict)
    #: The latest sample's arrivals per port, sorted, to explain the next sample's.
    recent: Mapping[int, list[float]] = field(default_factory=dict)
    #: Streams with a connection open at the latest sample, and streams marked departed: the
    #: only ones a sample can change without touching them (so a fold skips the others).
    counted: frozenset[StreamKey] = frozenset()
    departing: frozenset[StreamKey] = frozenset()
    #: Whether any inbound connection or arrival was ever seen.
    seen_any: bool = False


def fold(
    track: LullTrack, sample: TrafficSample, policy: TrafficPolicy, *, kept_closes: bool = True
) -> LullTrack:
    """The track after one more sample.

    `kept_closes`: whether a kept connection closed after its answer counts as its caller
    leaving, as an idle one's close does. True until the proxy's drain starts: from then on the
    pod itself closes kept connections after an answer (`Connection: close`).
    """
    first, now = track.sampled_at is None, sample.taken_at
    previous = now if track.sampled_at is None else track.sampled_at
    # A source change (netlink to /proc) gives every connection a new identity: no close can be
    # told from it, and every connection is new again (an arrival now, which errs long).
    switched = not first and sample.has_timing != track.has_timing
    known = LullTrack(streams=track.streams) if switched else track
    read = _read(known, sample, policy)
    idle_closed = {
        s.stream
        for k, s in known.open.items()
        if k not in read.open
        and (s.idle or (kept_closes and s.reused and s.since < previous - KEPT_AGE_SECONDS))
        and _pooled(known, s)
    }
    pod = track.pod.arrive(sorted(a for ts in read.arrivals.values() for a in ts), learn=not first)
    pod = history(pod, now, first=first)
    streams = dict(track.streams)
    departing = set(track.departing)
    touched = set(read.counts) | set(read.arrivals) | idle_closed | track.counted
    if pod.last_arrival_at != track.pod.last_arrival_at:
        touched |= departing  # a new arrival may refute a departure
    empty, no_counts = Stream(), (0, 0)
    for key in touched:
        stream = streams[key] = step(
            streams.get(key) or empty,
            sorted(read.arrivals.get(key) or ()),
            read.counts.get(key, no_counts),
            previous if key in idle_closed else None,
            pod,
            now,
            first=first,
        )
        (departing.discard if stream.departed_at is None else departing.add)(key)
    for times in read.by_port.values():
        times.sort()
    return LullTrack(
        sampled_at=now,
        previous_at=track.sampled_at,
        has_timing=sample.has_timing,
        open=read.open,
        closing=read.closing,
        streams=streams,
        pod=pod,
        unexplained=_unexplained(track, read.by_port, now, first=first),
        recent=read.by_port,
        counted=frozenset(read.counts),
        departing=frozenset(departing),
        seen_any=track.seen_any or bool(read.open) or pod.last_arrival_at is not None,
    )


def _pooled(track: LullTrack, seen: Seen) -> bool:
    """Whether its caller kept a pool of connections to us (two or more open last sample).

    A pool dropped whole is a caller's Envoy leaving a removed host; one connection closed may
    be a client renewing it (a cap on requests per connection), which another soon replaces.
    """
    stream = track.streams.get(seen.stream)
    return stream is not None and stream.open >= 2


@dataclass
class _Read:
    """One sample's inbound connections, by stream."""

    open: dict[int, Seen] = field(default_factory=dict)
    closing: dict[int, Seen] = field(default_factory=dict)
    arrivals: dict[StreamKey, list[float]] = field(default_factory=dict)
    by_port: dict[int, list[float]] = field(default_factory=dict)
    #: stream -> (open, idle open)
    counts: dict[StreamKey, tuple[int, int]] = field(default_factory=dict)
    #: Streams this sample adds, counted against MAX_STREAMS with the known ones.
    fresh: set[StreamKey] = field(default_factory=set)


def _read(track: LullTrack, sample: TrafficSample, policy: TrafficPolicy) -> _Read:
    read = _Read()
    timing, now = sample.has_timing, sample.taken_at
    ports, ignores, streams = policy.inbound_ports, policy.ignores, track.streams
    for conn in sample.connections:
        if conn.local_port not in ports:
            continue
        if conn.state == TcpState.ESTABLISHED:
            established = True
        elif conn.state == TcpState.CLOSE_WAIT:
            established = False
        else:
            continue
        if ignores(conn.remote_ip):
            continue
        before = track.open.get(conn.key) or track.closing.get(conn.key)
        at = None
        if timing and conn.last_recv_ms is not None:
            at = now - conn.last_recv_ms / 1000
        if before is None:  # a new connection: its first byte, or its handshake
            key = _stream_key(streams, read.fresh, conn.remote_ip, conn.local_port)
            arrival: float | None = now if at is None else at
        else:
            key = before.stream
            moved = at is not None and (
                before.arrival_at is None or at > before.arrival_at + SAME_ARRIVAL_SECONDS
            )
            arrival = at if moved else None
        latest = arrival if arrival is not None else (before.arrival_at if before else None)
        asked = bool(conn.bytes_received)
        reused = before is not None and (before.reused or (arrival is not None and before.asked))
        # Open before the sampler's first sample: as old as a pool gets, for all we know.
        since = before.since if before else (-math.inf if track.sampled_at is None else now)
        if arrival is not None:
            read.arrivals.setdefault(key, []).append(arrival)
            read.by_port.setdefault(conn.local_port, []).append(arrival)
        if not established:  # the peer closed it: its request counts, the connection does not
            read.closing[conn.key] = Seen(
                key, latest, idle=False, reused=reused, asked=asked, since=since
            )
            continue
        idle = not is_in_flight(conn, has_timing=timing)
        read.open[conn.key] = Seen(key, latest, idle, reused, asked, since)
        n_open, n_idle = read.counts.get(key, (0, 0))
        read.counts[key] = (n_open + 1, n_idle + idle)
    return read


def _unexplained(
    track: LullTrack, by_port: Mapping[int, list[float]], now: float, *, first: bool
) -> dict[int, Stream]:
    """Each port's arrivals newer than every other port's, in this sample or the one before.

    An arrival at the app that some caller's arrival at the proxy matches or follows is covered
    by that caller's own lull: tcp_info keeps only each connection's latest arrival, so pairing
    requests one by one would leave some unpaired and hold the pod for nothing. Only arrivals
    after everything the entry ports saw come from callers they never showed (short
    connections, gone between two samples).
    """
    result = dict(track.unexplained)
    for port, times in by_port.items():
        others = [ts for p, ts in by_port.items() if p != port]
        others += [ts for p, ts in track.recent.items() if p != port]
        newest = max((max(ts) for ts in others if ts), default=None)
        alone = [t for t in times if newest is None or t > newest + EXPLAINED_SECONDS]
        stream = result.get(port) or Stream()
        if alone:
            stream = stream.arrive(alone, learn=not first)
        result[port] = history(stream, now, first=first)
    return result


def _stream_key(
    streams: Mapping[StreamKey, Stream], fresh: set[StreamKey], ip: str, port: int
) -> StreamKey:
    key = (ip, port)
    if key in streams or key in fresh:
        return key
    if len(streams) + len(fresh) < MAX_STREAMS:
        fresh.add(key)
        return key
    return ("*", port)
