"""When inbound traffic has really stopped: a quiet window learned from what a shutdown sees.

The sampler folds each sample into a `LullTrack` (`fold`); phase quiesce asks `decide` after
each sample. Both are pure: loop times in, decisions out. docs/quiesce.md explains the rules.

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

#: A window is the largest gap seen, this much longer, plus MARGIN_SECONDS: a timer-driven
#: client's period jitters by a few per cent, and a sample dates arrivals to the millisecond.
MARGIN_RATIO = 0.1
MARGIN_SECONDS = 0.05
#: Random (Poisson-like) arrivals at rate r leave a gap longer than w with probability
#: exp(-r * w), and the largest of a few gaps says little about that tail: the window is also at
#: least ln(1000) / r, so such a lull comes once in a thousand gaps.
RATE_FACTOR = 6.9
#: A learned window is trusted only once the stream was watched at least this many windows
#: long: a rhythm not seen in full yet is not a rhythm. The gap from the last arrival before
#: the sampler started to the first one after is measured, so a pause just before is not missed.
HISTORY_FACTOR = 1.0
#: Fewer gaps than this teach nothing: the window stays at its bound.
MIN_GAPS = 3
#: A connection's arrival moved by less than this is the same arrival dated by a later sample
#: (tcp_info counts in jiffies, and a sample's own time jitters by its duration).
SAME_ARRIVAL_SECONDS = 0.01
#: Beyond this many streams (a pod called straight by thousands of clients) new peers share one
#: stream per port, which only makes their window more careful.
MAX_STREAMS = 4096


@dataclass(frozen=True)
class QuietBounds:
    """The settings that bound the learned window and the phase (docs/configuration.md)."""

    min_window_seconds: float
    max_window_seconds: float
    quiesce_min_seconds: float
    idle_hold_seconds: float
    #: Ports where callers arrive (the proxy's, in a meshed pod); None: every watched port.
    #: Other ports only carry the proxy's own connections to the app: arrivals, never callers.
    entry_ports: frozenset[int] | None = None

    def is_entry(self, port: int) -> bool:
        """Whether connections on this port come from callers."""
        return self.entry_ports is None or port in self.entry_ports


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


def learned_window(stream: Stream, bounds: QuietBounds, *, has_timing: bool = True) -> float:
    """How long this stream must stay silent before its silence means it stopped."""
    top = bounds.max_window_seconds
    last, since = stream.last_arrival_at, stream.history_from
    if not has_timing or stream.gaps < MIN_GAPS or last is None or since is None:
        return top
    watched = last - since
    if watched <= 0:
        return top
    grown = stream.largest_gap_seconds * (1 + MARGIN_RATIO) + MARGIN_SECONDS
    random_tail = RATE_FACTOR * watched / stream.gaps
    candidate = min(top, max(bounds.min_window_seconds, grown, random_tail))
    if watched < HISTORY_FACTOR * candidate:
        return top
    return candidate


@dataclass(frozen=True)
class QuietDecision:
    """Whether quiesce may end now, by which signal, and what it waits on otherwise."""

    #: None: keep waiting. Else `no_traffic`, `minimum`, `lull`, `peers_closed` or `idle_hold`.
    ended_by: str | None
    #: The learned window that bound the wait (the stream that went quiet last).
    window_seconds: float
    waiting_on: str = ""


def decide(
    track: LullTrack, *, now: float, started_at: float, bounds: QuietBounds
) -> QuietDecision:
    """The rules of docs/quiesce.md at `now`, for a phase that began at `started_at`."""
    if track.sampled_at is None:
        window = learned_window(track.pod, bounds, has_timing=track.has_timing)
        return QuietDecision(None, window, "the first sample")
    plan = _plan(track, bounds, started_at)
    ended_by, waiting = _verdict(plan, now - started_at, now, bounds)
    return QuietDecision(ended_by, plan.window, waiting)


@dataclass(frozen=True)
class _Plan:
    """When the lull ends with departures taken into account (`until`) and without them."""

    until: float
    natural_until: float
    window: float
    who: str
    gone: tuple[float, ...]
    idle_open: int
    started_at: float
    seen_any: bool


def _plan(track: LullTrack, bounds: QuietBounds, started_at: float) -> _Plan:
    pod, timing = track.pod, track.has_timing
    pod_window = learned_window(pod, bounds, has_timing=timing)
    # When each stream's silence will have lasted its window; a departed stream never holds,
    # and once one departed, neither does the pod-wide lull (departed() checked it).
    natural: list[tuple[float, float, str]] = []
    holding: list[tuple[float, float, str]] = []
    gone: list[float] = []
    idle_open = 0
    for key, stream in track.streams.items():
        if not bounds.is_entry(key[1]) or stream.last_arrival_at is None:
            continue
        idle_open += stream.idle_open
        window = learned_window(stream, bounds, has_timing=timing)
        silent = (stream.last_arrival_at + window, window, f"{key[0]} on port {key[1]}")
        natural.append(silent)
        if stream.departed_at is not None and departed(stream, pod):
            gone.append(stream.departed_at)
        else:
            holding.append(silent)
    if pod.last_arrival_at is not None:
        natural.append((pod.last_arrival_at + pod_window, pod_window, "every port"))
        if not gone:
            holding.append(natural[-1])
    until, window, who = max(holding, default=(started_at, pod_window, ""))
    natural_until = max(natural, default=(started_at, pod_window, ""))[0]
    return _Plan(
        until, natural_until, window, who, tuple(gone), idle_open, started_at, track.seen_any
    )


def _verdict(
    plan: _Plan, elapsed: float, now: float, bounds: QuietBounds
) -> tuple[str | None, str]:
    """(ended_by or None, what it waits on); the order is docs/quiesce.md's."""
    if elapsed < bounds.quiesce_min_seconds:
        return None, "the minimum"
    if not plan.seen_any:
        return "no_traffic", ""
    if now < plan.until:
        return None, f"a lull of {plan.window:.3g} s from {plan.who}"
    if plan.idle_open:
        held = elapsed >= bounds.idle_hold_seconds
        return ("idle_hold", "") if held else (None, f"{plan.idle_open} idle connections")
    if plan.gone and (now < plan.natural_until or max(plan.gone) >= plan.natural_until):
        ended_by, ready_at = "peers_closed", max(plan.gone)
    else:
        ended_by, ready_at = "lull", plan.natural_until
    # Ready before the minimum ended: the minimum was what held.
    return ("minimum" if ready_at <= plan.started_at + bounds.quiesce_min_seconds else ended_by), ""
