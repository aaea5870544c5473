"""Quiesce's rules: the learned quiet window and the decision to end, over a `LullTrack`.

Pure: a track and loop times in, a decision out (docs/quiesce.md has the rules and sources).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.model.stream import departed

if TYPE_CHECKING:
    from sidecar.model.lull import LullTrack
    from sidecar.model.stream import Stream

#: A window is the largest gap seen, this much longer, plus MARGIN_SECONDS: a timer-driven
#: client's period jitters by a few per cent, and a sample dates arrivals to the millisecond.
MARGIN_RATIO = 0.1
MARGIN_SECONDS = 0.05
#: Random (Poisson-like) arrivals at rate r leave a gap longer than w with probability
#: exp(-r * w), and the largest of a few gaps says little about that tail. A shutdown watches
#: up to r * quiesce_max gaps, any of which could be taken for the stop: the window is also at
#: least ln(TAIL_ODDS * r * quiesce_max) / r, so such a lull comes once in TAIL_ODDS shutdowns.
TAIL_ODDS = 1000.0
#: A learned window is trusted only once the stream was watched at least this many windows
#: long: a rhythm not seen in full yet is not a rhythm. The gap from the last arrival before
#: the sampler started to the first one after is measured, so a pause just before is not missed.
HISTORY_FACTOR = 1.0
#: Gaps needed before a window is learned; with fewer the window stays at its bound.
MIN_GAPS = 4


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
    #: The phase's cap: how long a shutdown may watch gaps (sets the random tail's odds).
    quiesce_max_seconds: float = 30.0
    #: The proxy's inbound drain starts at the latest this long into the phase (drain_reason).
    proxy_drain_after_seconds: float = 2.0

    def is_entry(self, port: int) -> bool:
        """Whether connections on this port come from callers."""
        return self.entry_ports is None or port in self.entry_ports


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
    rate = stream.gaps / watched
    random_tail = math.log(max(TAIL_ODDS, TAIL_ODDS * rate * bounds.quiesce_max_seconds)) / rate
    candidate = min(top, max(bounds.min_window_seconds, grown, random_tail))
    if watched < HISTORY_FACTOR * candidate:
        return top
    return candidate


@dataclass(frozen=True)
class QuietDecision:
    """Whether quiesce may end now, by which signal, and what it waits on otherwise."""

    #: None: keep waiting. Else `no_traffic`, `minimum`, `lull`, `peers_closed`, `idle_closed`
    #: or `idle_hold`.
    ended_by: str | None
    #: The learned window that bound the wait (the stream that went quiet last).
    window_seconds: float
    waiting_on: str = ""


def decide(
    track: LullTrack, *, now: float, started_at: float, bounds: QuietBounds
) -> QuietDecision:
    """The rules of docs/quiesce.md at loop time `now`, for a phase that began at `started_at`.

    Silences are measured up to the latest sample's time, not `now`: an arrival after it is
    invisible yet, and would otherwise count as silence. `now` only times the minimum and the
    idle hold.
    """
    if track.sampled_at is None:
        window = learned_window(track.pod, bounds, has_timing=track.has_timing)
        return QuietDecision(None, window, "the first sample")
    plan = _plan(track, bounds, started_at)
    ended_by, waiting = _verdict(plan, now - started_at, min(now, track.sampled_at), bounds)
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
    #: The latest start of a sample interval in which a caller's idle connection closed.
    idle_closed_at: float | None
    #: Whether the latest sample was the first to miss a closed idle connection.
    idle_close_unconfirmed: bool
    started_at: float
    seen_any: bool


#: A drain not started yet starts when the phase has less than this left: before the app's
#: release, whatever the data plane did, kept connections must hear `Connection: close`.
DRAIN_BEFORE_END_SECONDS = 0.3


def drain_reason(
    track: LullTrack, *, elapsed: float, remaining: float, bounds: QuietBounds
) -> str | None:
    """Why the proxy's inbound drain should start now, or None to leave connections be.

    The drain answers `Connection: close`, so a caller's pooled connections to us last one
    request each. That hides the clearest sign that a caller's data plane has moved: its Envoy
    dropping the connections it pooled to a removed host (EV12). And until kube-proxy moved
    too, a pinned client told to close reconnects to us. So the drain waits for a caller to
    leave, for `proxy_drain_after_seconds`, or for the end of the phase.
    """
    if any(gone(track, track.streams[key]) for key in track.departing if key in track.streams):
        return "a caller left"
    if elapsed >= bounds.proxy_drain_after_seconds:
        return f"{bounds.proxy_drain_after_seconds:g} s into quiesce"
    if remaining <= DRAIN_BEFORE_END_SECONDS:
        return "the phase's end"
    return None


def gone(track: LullTrack, stream: Stream) -> bool:
    """Whether `stream` departed, as rule 5 of docs/quiesce.md counts it.

    A departure counts once two samples in a row saw it (a socket missing from one dump is not
    a caller leaving), and only with tcp_info (without it, no close can be told from a busy one).
    """
    at, sampled_at = stream.departed_at, track.sampled_at
    if not track.has_timing or at is None or sampled_at is None or at >= sampled_at:
        return False
    return departed(stream, track.pod)


def _plan(track: LullTrack, bounds: QuietBounds, started_at: float) -> _Plan:
    pod, timing = track.pod, track.has_timing
    pod_window = learned_window(pod, bounds, has_timing=timing)
    # When each stream's silence will have lasted its window; a departed stream never holds.
    natural: list[tuple[float, float, str]] = []
    holding: list[tuple[float, float, str]] = []
    left: list[float] = []
    idle_open, idle_closed_at = 0, None
    for key, stream in track.streams.items():
        if not bounds.is_entry(key[1]):
            continue
        idle_open += stream.idle_open
        closed = stream.idle_closed_after
        if timing and closed is not None and (idle_closed_at is None or closed > idle_closed_at):
            idle_closed_at = closed
        if stream.last_arrival_at is None:
            continue
        window = learned_window(stream, bounds, has_timing=timing)
        silent = (stream.last_arrival_at + window, window, f"{key[0]} on port {key[1]}")
        natural.append(silent)
        if stream.departed_at is not None and gone(track, stream):
            left.append(stream.departed_at)
        else:
            holding.append(silent)
    if pod.last_arrival_at is not None:
        natural.append((pod.last_arrival_at + pod_window, pod_window, "every port"))
        if not left:
            holding.append(natural[-1])
        else:
            # A departure releases its own stream only: arrivals on the app's ports that no
            # caller's explains come from callers the entry ports never showed, and still hold.
            holding.extend(_residual(track, bounds))
    until, window, who = max(holding, default=(started_at, pod_window, ""))
    natural_until = max(natural, default=(started_at, pod_window, ""))[0]
    return _Plan(
        until,
        natural_until,
        window,
        who,
        tuple(left),
        idle_open,
        idle_closed_at,
        idle_closed_at is not None and idle_closed_at == track.previous_at,
        started_at,
        track.seen_any,
    )


def _residual(track: LullTrack, bounds: QuietBounds) -> list[tuple[float, float, str]]:
    """The lulls of each non-entry port's unexplained arrivals."""
    lulls = []
    for port, stream in track.unexplained.items():
        if bounds.is_entry(port) or stream.last_arrival_at is None:
            continue
        window = learned_window(stream, bounds, has_timing=track.has_timing)
        lulls.append((stream.last_arrival_at + window, window, f"callers seen on port {port}"))
    return lulls


def _verdict(
    plan: _Plan, elapsed: float, sampled_at: float, bounds: QuietBounds
) -> tuple[str | None, str]:
    """(ended_by or None, what it waits on); the order is docs/quiesce.md's."""
    if elapsed < bounds.quiesce_min_seconds:
        return None, "the minimum"
    if not plan.seen_any:
        return "no_traffic", ""
    if sampled_at < plan.until:
        return None, f"a lull of {plan.window:.3g} s from {plan.who}"
    if plan.idle_open:
        held = elapsed >= bounds.idle_hold_seconds
        return ("idle_hold", "") if held else (None, f"{plan.idle_open} idle connections")
    if plan.idle_close_unconfirmed:  # a socket missing from one dump is not a close
        return None, "a second sample without the closed idle connection"
    # What held last names the ending: the lull (unless departures cut it short), a departure,
    # or an idle connection's close; ready before the minimum ended, the minimum held.
    ready = [("peers_closed", max(plan.gone))] if plan.gone else []
    if not plan.gone or sampled_at >= plan.natural_until:
        ready.append(("lull", plan.natural_until))
    if plan.idle_closed_at is not None:
        ready.append(("idle_closed", plan.idle_closed_at))
    # On a tie the more specific signal wins (a departure is an idle close, after its lull).
    order = ("lull", "idle_closed", "peers_closed")
    ended_by, ready_at = max(ready, key=lambda r: (r[1], order.index(r[0])))
    return ("minimum" if ready_at <= plan.started_at + bounds.quiesce_min_seconds else ended_by), ""
