"""Pins each quiet-window decision on synthetic arrival traces, sampled on a fake clock.

A trace is callers' connections with their requests; every 0.1 s it is read as the sampler
would (tcp_info ages, bytes, in flight or idle), folded, and asked. The sampler starts at 0 (the
first hook), quiesce at S, and the data plane moves at M: callers stop choosing the pod then,
and a proxy pool drops it (idle connections closed at once, busy ones after their answer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from sidecar.model.lull import LullTrack, fold
from sidecar.model.quiet import QuietBounds, QuietDecision, decide, learned_window
from sidecar.model.stream import Stream
from sidecar.model.traffic import Connection, TcpState, TrafficSample, policy_for

S, M = 0.5, 2.5  # quiesce starts; the data plane moved (a 2 s propagation delay)
INTERVAL = 0.1
BOUNDS = QuietBounds(
    min_window_seconds=0.2, max_window_seconds=2.0, quiesce_min_seconds=1.0, idle_hold_seconds=10.0
)
INGRESS, PINNED, APP, ENVOY = "10.1.0.1", "10.2.0.7", 8080, 15006
POLICY = policy_for({APP, ENVOY}, "10.0.0.1")


def ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


@dataclass
class Conn:
    """One connection with its requests (arrival, answered), as a sample at `t` reads it."""

    key: int
    peer: str
    port: int
    opened: float
    closed: float | None = None
    requests: list[tuple[float, float]] = field(default_factory=list)

    def idle_at(self, t: float) -> bool:
        open_ = self.opened <= t and (self.closed is None or t < self.closed)
        return open_ and all(done <= t for _, done in self.requests)

    def seen_at(self, t: float) -> Connection | None:
        if t < self.opened or (self.closed is not None and t >= self.closed):
            return None
        past = [r for r in self.requests if r[0] <= t]
        conn = Connection(self.port, self.peer, 40000 + self.key, TcpState.ESTABLISHED, self.key)
        if not past:  # connected, never asked
            age = ms(t - self.opened)
            return conn._replace(
                last_recv_ms=age, last_send_ms=age, bytes_acked=0, bytes_received=0
            )
        asked = past[-1][0]
        done = [d for _, d in past if d <= t]
        sent = max(done, default=self.opened)
        return conn._replace(
            last_recv_ms=ms(t - asked),
            last_send_ms=ms(t - sent),
            bytes_acked=200 * len(done),
            bytes_received=100 * len(past),
        )


@dataclass
class Pool:
    """A caller's keep-alive pool to the pod (an ingress Envoy, or one pinned client)."""

    peer: str
    port: int
    conns: list[Conn]
    #: From this moment the pod's proxy answers `Connection: close` (its inbound drain).
    drain_from: float | None = None

    def request(self, at: float, latency: float) -> None:
        idle = [c for c in self.conns if c.peer == self.peer and c.idle_at(at)]
        if idle:
            conn = max(idle, key=lambda c: c.requests[-1][1] if c.requests else c.opened)
        else:
            conn = Conn(len(self.conns) + 1, self.peer, self.port, at)
            self.conns.append(conn)
        conn.requests.append((at, at + latency))
        if self.drain_from is not None and at + latency >= self.drain_from:
            conn.closed = at + latency  # answered with `Connection: close`

    def drop(self, at: float) -> None:
        """The endpoint left the caller's pool: idle connections now, busy ones once answered."""
        for conn in self.conns:
            if conn.peer != self.peer or (conn.closed is not None and conn.closed <= at):
                continue
            conn.closed = max([at, *(done for _, done in conn.requests)])


def read(conns: list[Conn], t: float) -> TrafficSample:
    """What the sampler reads at `t`."""
    seen = (c.seen_at(t) for c in conns)
    return TrafficSample(t, frozenset(), tuple(c for c in seen if c), has_timing=True)


def run(
    conns: list[Conn],
    *,
    until: float,
    bounds: QuietBounds = BOUNDS,
    drain_from: float | None = None,
) -> tuple[float, QuietDecision]:
    """Sample from 0, ask from S on; the first decision that ends quiesce, or the last one.

    From `drain_from` the pod's proxy closes kept connections itself, as quiesce tells fold.
    """
    track = LullTrack()
    step = 0
    while True:
        t = round(step * INTERVAL, 6)
        kept_closes = drain_from is None or t < drain_from
        track = fold(track, read(conns, t), POLICY, kept_closes=kept_closes)
        if t >= S:
            decision = decide(track, now=t, started_at=S, bounds=bounds)
            if decision.ended_by is not None or t >= until:
                return t, decision
        step += 1


def steady(pool: Pool, rate: float, *, start: float, stop: float, seed: int = 7) -> float:
    """Requests every 1/rate s with 20-300 ms latency; the last arrival."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible trace, not a secret
    at = start
    while at < stop:
        pool.request(at, rng.uniform(0.02, 0.3))
        last, at = at, at + 1 / rate
    return last


def bursts(pool: Pool, *, every: float, size: int, start: float, stop: float) -> float:
    rng = random.Random(3)  # noqa: S311 - a reproducible trace, not a secret
    at = start
    while at < stop:
        for i in range(size):
            pool.request(at + i * 0.0005, rng.uniform(0.02, 0.3))
        last, at = at + (size - 1) * 0.0005, at + every
    return last


@pytest.mark.parametrize("rate", [50.0, 500.0])  # the pod's half of 100 and 1000 req/s
def test_steady_traffic_learns_the_shortest_window_and_ends_just_after_the_move(
    rate: float,
) -> None:
    conns: list[Conn] = []
    ingress = Pool(INGRESS, APP, conns)
    last = steady(ingress, rate, start=-5.0, stop=M)
    ingress.drop(M)
    ended, decision = run(conns, until=30)
    assert decision.ended_by in {"lull", "peers_closed"}
    # At 50/s the random tail for a 30 s cap: ln(1000 * 50 * 30) / 50 s, at 500/s the least.
    assert decision.window_seconds == pytest.approx(0.2 if rate > 100 else 0.3, abs=0.01)
    # Never before the caller moved. The drop closes idle connections at once and busy ones
    # after their answer (at most 0.3 s): the caller has left once the last is closed, which a
    # second sample confirms; by then, or by the lull, whichever comes first.
    last_closed = max(c.closed for c in conns if c.closed is not None)
    assert M < last_closed <= M + 0.3
    assert M < ended <= min(last + decision.window_seconds, last_closed) + 2 * INTERVAL + 1e-9


def test_steady_traffic_through_the_proxy_drain_ends_one_window_after_the_last_request() -> None:
    conns: list[Conn] = []
    ingress = Pool(INGRESS, ENVOY, conns, drain_from=S)  # each answer closes its connection
    last = steady(ingress, 50, start=-5.0, stop=M)
    ended, decision = run(conns, until=30, drain_from=S)
    assert decision.ended_by == "lull"
    assert decision.window_seconds < 0.35
    assert last + decision.window_seconds <= ended <= last + decision.window_seconds + INTERVAL


def test_bursts_every_second_learn_a_window_just_over_a_second() -> None:
    conns: list[Conn] = []
    ingress = Pool(INGRESS, ENVOY, conns, drain_from=S)  # no idle connection between bursts
    last = bursts(ingress, every=1.0, size=20, start=-2.95, stop=M)
    ended, decision = run(conns, until=30, drain_from=S)
    assert decision.ended_by == "lull"
    assert 1.0 < decision.window_seconds < 1.2
    # Never before the next burst would have come, and within a sample of the window.
    assert last + 1.0 < ended <= last + decision.window_seconds + INTERVAL


def test_bursts_over_a_kept_pool_end_when_the_caller_drops_its_idle_connections() -> None:
    conns: list[Conn] = []
    ingress = Pool(INGRESS, APP, conns)  # no proxy: idle pool connections between bursts
    bursts(ingress, every=1.0, size=20, start=-2.95, stop=M)
    ingress.drop(M)
    ended, decision = run(conns, until=30)
    assert decision.ended_by == "peers_closed"
    # The bursts' answers end by M - 0.7: the drop closes only idle connections, seen next sample.
    assert M <= ended <= M + INTERVAL


def _idle_pool(closed: float | None) -> list[Conn]:
    """Three keep-alive connections last used 30 s ago: open, silent."""
    return [Conn(k, INGRESS, APP, -31.0, closed, [(-30.0, -29.9)]) for k in (1, 2, 3)]


def test_idle_keep_alive_connections_hold_quiesce_until_their_peer_closes_them() -> None:
    ended, decision = run(_idle_pool(closed=M + 4.0), until=30)  # a 6 s propagation delay
    assert decision.ended_by == "peers_closed"
    assert M + 4.0 <= ended <= M + 4.0 + INTERVAL


def test_idle_keep_alive_connections_that_never_close_are_held_for_the_idle_hold_only() -> None:
    ended, decision = run(_idle_pool(closed=None), until=30)
    assert decision.ended_by == "idle_hold"
    assert ended == pytest.approx(S + BOUNDS.idle_hold_seconds)


def test_a_pinned_client_is_waited_for_as_its_own_stream_not_by_the_dense_traffic() -> None:
    conns: list[Conn] = []
    ingress = Pool(INGRESS, ENVOY, conns, drain_from=S)
    pinned = Pool(PINNED, ENVOY, conns, drain_from=S)
    steady(ingress, 50, start=-5.0, stop=M)
    # kube-proxy moves the pinned client 1.5 s after the ingress: it keeps coming every 0.5 s,
    # on a new connection each time (the drain's `Connection: close`).
    last = steady(pinned, 2, start=-5.0, stop=M + 1.5, seed=11)
    ended, decision = run(conns, until=30, drain_from=S)
    # Two requests a second are too few to tell a rhythm from chance: the bound, not 0.2 s.
    assert decision.ended_by == "lull"
    assert decision.window_seconds == BOUNDS.max_window_seconds
    assert last + 2.0 <= ended <= last + 2.0 + INTERVAL


def test_traffic_that_never_stops_never_ends_quiesce() -> None:
    conns: list[Conn] = []
    steady(Pool(INGRESS, ENVOY, conns, drain_from=S), 50, start=-5.0, stop=40.0)
    ended, decision = run(conns, until=30, drain_from=S)
    assert ended == 30
    assert decision.ended_by is None
    assert decision.waiting_on.startswith("a lull of 0.3")


def test_no_connection_and_no_arrival_ends_at_the_minimum() -> None:
    ended, decision = run([], until=30)
    assert decision.ended_by == "no_traffic"
    assert ended == pytest.approx(S + BOUNDS.quiesce_min_seconds)


def test_traffic_that_stopped_long_before_ends_at_the_minimum() -> None:
    # Its caller closed the idle connection before quiesce began.
    conns = [Conn(1, INGRESS, APP, -20.0, 0.35, [(-19.0, -18.9)])]
    ended, decision = run(conns, until=30)
    assert decision.ended_by == "minimum"
    assert ended == pytest.approx(S + BOUNDS.quiesce_min_seconds)


def test_an_arrival_in_the_interval_of_the_close_refutes_the_departure() -> None:
    # A pool's idle connections vanish between two samples, and a request came in that
    # interval: the proxy's drain may have closed them after answering, so the caller stays.
    conns = [
        Conn(1, INGRESS, APP, -10.0, 1.55, [(-9.0, -8.9)]),
        Conn(4, INGRESS, APP, -10.0, 1.55, [(-9.5, -9.4)]),
        Conn(2, INGRESS, APP, 1.52, 1.58, [(1.52, 1.56)]),  # never seen by a sample
        Conn(3, "127.0.0.6", 9000, -10.0, None, [(-9.0, -8.9), (1.521, 1.56)]),  # proxy to app
    ]
    bounds = QuietBounds(0.2, 2.0, 1.0, 10.0, entry_ports=frozenset({APP}))
    policy = policy_for({APP, 9000}, "")
    track = LullTrack()
    for t in (1.4, 1.5, 1.6):
        track = fold(track, read(conns, t), policy)
    assert track.streams[INGRESS, APP].idle_closed_after == 1.5
    assert track.streams[INGRESS, APP].departed_at is None
    assert decide(track, now=1.6, started_at=0.0, bounds=bounds).ended_by is None


@pytest.mark.parametrize(
    ("stream", "window"),
    [
        (Stream(), 2.0),  # nothing learned
        (Stream(10.0, 0.0, 0.01, 2), 2.0),  # too few gaps
        (Stream(10.0, 0.0, 0.01, 1000), 0.2),  # dense: the least window
        (Stream(10.0, 0.0, 0.01, 500), 0.284),  # 50/s at random: ln(1000 * 50 * 30) / 50
        (Stream(10.0, 0.0, 1.0, 300), 1.15),  # bursts every second, 10 s watched
        (Stream(10.0, 9.0, 0.3, 100), 0.38),  # 0.3 s at most between requests, 1 s watched
        (Stream(10.0, 9.8, 0.3, 100), 2.0),  # the same, watched 0.2 s: not a window long
        (Stream(10.0, 0.0, 0.9, 20), 2.0),  # 2 requests/s at random: the tail, not the largest
        (Stream(10.0, 0.0, 0.1, 200), 0.665),  # 20 requests/s at random
        (Stream(10.0, 0.0, 5.0, 3), 2.0),  # longer than the bound
    ],
)
def test_learned_window(stream: Stream, window: float) -> None:
    assert learned_window(stream, BOUNDS) == pytest.approx(window, abs=0.001)


def test_without_tcp_timing_the_window_is_the_bound() -> None:
    assert learned_window(Stream(10.0, 0.0, 0.01, 500), BOUNDS, has_timing=False) == 2.0
