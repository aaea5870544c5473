"""One stream of a shutdown's inbound traffic, and how one sample moves it.

A stream is one peer address on one local port: a caller (an ingress or mesh Envoy, a pinned
client). `LullTrack` (sidecar/model/lull.py) holds one per caller and one for the pod as a
whole; docs/quiesce.md explains what each field means to the quiet rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
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
    #: Seen departed, then back (an arrival, an open connection): its closes do not mean it
    #: leaves (a client closing its session after each batch, or renewing its connections).
    returned: bool = False

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


def history(stream: Stream, now: float, *, first: bool) -> Stream:
    """Gaps can be seen from the first sample on, or from a later stream's first arrival."""
    if stream.history_from is not None or stream.last_arrival_at is None:
        return stream
    return replace(stream, history_from=now if first else stream.last_arrival_at)


def step(
    stream: Stream,
    times: list[float],
    counts: tuple[int, int],
    idle_closed_after: float | None,
    pod: Stream,
    now: float,
    *,
    first: bool,
) -> Stream:
    """One stream after a sample, built once (a fold may touch thousands of streams)."""
    moved = stream.arrive(times, learn=not first) if times else stream
    new = Stream(
        moved.last_arrival_at,
        history(moved, now, first=first).history_from,
        moved.largest_gap_seconds,
        moved.gaps,
        counts[0],
        counts[1],
        stream.idle_closed_after if idle_closed_after is None else idle_closed_after,
        moved.departed_at,
        stream.returned or (stream.departed_at is not None and bool(times or counts[0])),
    )
    # Marked departed the first time the evidence holds, keeping that first date.
    if departed(new, pod):
        departed_at = now if new.departed_at is None else new.departed_at
    else:
        departed_at = None
    new = replace(new, departed_at=departed_at) if departed_at != new.departed_at else new
    return stream if new == stream else new


def departed(stream: Stream, pod: Stream) -> bool:
    """The peer closed its idle connections, none is left open, and nothing arrived since.

    The pod's proxy closes a connection only after answering on it (EV3); a caller's Envoy
    closes its idle ones when the pod's removal reaches it (EV12).

    "Nothing" is pod-wide: a request on a connection opened and closed between two samples is
    still seen on the proxy's own connection to the app, and refutes the departure.
    """
    closed_after = stream.idle_closed_after
    if stream.open or closed_after is None or stream.returned:
        return False
    return pod.last_arrival_at is None or pod.last_arrival_at <= closed_after
