"""Quiesce's rules: the learned quiet window and the decision to end, over a `LullTrack`.

Pure: a track and loop times in, a decision out (docs/quiesce.md has the rules and sources).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.model.lull import departed

if TYPE_CHECKING:
    from sidecar.model.lull import LullTrack, Stream

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
