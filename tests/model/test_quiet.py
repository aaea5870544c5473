"""Pins the quiet rules against the traces that broke them (review of the adaptive window).

Each test is a trace on a fake clock, folded and decided as the sampler would; see
tests/model/test_lull.py for the trace helpers and docs/quiesce.md for the rules.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from sidecar.model.lull import MAX_STREAMS, LullTrack, fold
from sidecar.model.quiet import QuietBounds, decide, drain_reason, learned_window
from sidecar.model.stream import Stream, departed
from sidecar.model.traffic import (
    Connection,
    TcpState,
    TrafficPolicy,
    TrafficSample,
    policy_for,
)
from tests.model.test_lull import BOUNDS, INTERVAL, Conn, read, run

ENTRY, APP = 15006, 8080
MESHED = QuietBounds(0.2, 2.0, 1.0, 10.0, entry_ports=frozenset({ENTRY}))
MESHED_POLICY = policy_for({ENTRY, APP}, "10.0.0.1")
S = 0.5


def until_ended(
    samples: list[TrafficSample],
    bounds: QuietBounds = MESHED,
    policy: TrafficPolicy = MESHED_POLICY,
) -> tuple[float | None, str | None]:
    """Fold the samples, deciding from S on at each sample's time; (when, ended_by) or Nones."""
    track = LullTrack()
    for sample in samples:
        track = fold(track, sample, policy)
        t = sample.taken_at
        if t >= S:
            decision = decide(track, now=t, started_at=S, bounds=bounds)
            if decision.ended_by is not None:
                return t, decision.ended_by
    return None, None


def sampled(conns: list[Conn], until: float) -> list[TrafficSample]:
    return [read(conns, round(k * INTERVAL, 6)) for k in range(round(until / INTERVAL) + 1)]


def test_a_departure_releases_only_its_own_stream_not_callers_seen_on_the_app_port() -> None:
    # Ingress A keeps one idle connection on the entry port and closes it at 2.35; caller C
    # sends every second on short connections the entry port never shows, seen only on the
    # proxy's kept connection to the app. A leaving must not release the app while C sends.
    a = Conn(1, "10.1.0.1", ENTRY, -30.0, 2.35, [(-20.0, -19.9)])
    proxy_to_app = Conn(2, "127.0.0.6", APP, -30.0, None, [])
    c_requests = [round(-4.97 + k, 3) for k in range(13)]  # the last at 7.03
    proxy_to_app.requests.extend((at, at + 0.01) for at in c_requests)
    ended, ended_by = until_ended(sampled([a, proxy_to_app], until=20.0))
    assert ended is not None
    assert ended > c_requests[-1]
    assert ended_by == "lull"


def test_the_lull_is_measured_up_to_the_sample_not_up_to_the_decision() -> None:
    # 10 requests/s on one kept connection until 2.9; a sample that began at 3.55 cannot know
    # about anything after, so deciding later on the same sample must not add silence.
    policy = policy_for({APP}, "")
    bounds = QuietBounds(0.2, 2.0, 0.0, 10.0)
    track = LullTrack()
    for k in range(30):
        conn = Connection(APP, "10.1.0.1", 40000, TcpState.ESTABLISHED, 1, 0, 0, 0, 0, 100, 100)
        track = fold(
            track, TrafficSample(round(k * 0.1, 3), frozenset(), (conn,), has_timing=True), policy
        )
    conn = Connection(APP, "10.1.0.1", 40000, TcpState.ESTABLISHED, 1, 0, 0, 650, 100, 100, 100)
    track = fold(track, TrafficSample(3.55, frozenset(), (conn,), has_timing=True), policy)
    window = decide(track, now=3.55, started_at=0.0, bounds=bounds).window_seconds
    assert 2.9 + window > 3.55  # not silent long enough at the sample
    late = decide(track, now=2.9 + window + 0.5, started_at=0.0, bounds=bounds)
    assert late.ended_by is None
    assert late.waiting_on.startswith("a lull of")


def test_one_sample_never_adds_more_streams_than_the_cap() -> None:
    policy = policy_for({APP}, "")
    conns = tuple(
        Connection(APP, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 40000, 1, i + 1, 0, 0, 50)
        for i in range(MAX_STREAMS + 5000)
    )
    track = fold(LullTrack(), TrafficSample(0.0, frozenset(), conns, has_timing=True), policy)
    assert len(track.streams) == MAX_STREAMS + 1  # the known ones, and one shared per port
    assert ("*", APP) in track.streams
    assert track.streams["*", APP].open == 5000


def _poisson_released_early(rate: float, seed: int, moves_at: float = 10.0) -> bool:
    """Arrivals seen only through the proxy's connection to the app until `moves_at`."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible trace, not a secret
    arrivals, t = [], -5.0
    while (t := t + rng.expovariate(rate)) < moves_at:
        arrivals.append(t)
    samples = []
    for step in range(200):
        now = round(step * INTERVAL, 6)
        past = [a for a in arrivals if a <= now]
        age = round((now - past[-1]) * 1000) if past else 60000
        conn = Connection(APP, "127.0.0.6", 40000, 1, 1, 0, 0, age, max(0, age - 5), 100, 100)
        samples.append(TrafficSample(now, frozenset(), (conn,), has_timing=True))
    ended, _ = until_ended(samples)
    return ended is not None and any(a > ended for a in arrivals)


@pytest.mark.parametrize(
    ("rate", "seeds"),
    # Seeds that released early with a once-per-thousand-gaps tail and 3 gaps trusted.
    [(5.0, (2, 11, 61, 212, 213)), (10.0, (6, 213))],
)
def test_random_arrivals_at_low_rates_do_not_end_quiesce_before_they_stop(
    rate: float, seeds: tuple[int, ...]
) -> None:
    assert [s for s in seeds if _poisson_released_early(rate, s)] == []


@pytest.mark.parametrize(
    ("gaps", "over", "window"),
    [
        (3, 1.0, 2.0),  # three gaps are not trusted, however regular
        (50, 10.0, 2.0),  # 5/s at random: ln(1000 * 5 * 30) / 5 is past the bound
        (100, 10.0, 1.26),  # 10/s: ln(1000 * 10 * 30) / 10
        (1000, 10.0, 0.2),  # 100/s: the least window
    ],
)
def test_the_random_tail_grows_with_the_gaps_a_shutdown_watches(
    gaps: int, over: float, window: float
) -> None:
    stream = Stream(last_arrival_at=over, history_from=0.0, largest_gap_seconds=0.05, gaps=gaps)
    assert learned_window(stream, BOUNDS) == pytest.approx(window, abs=0.01)


def test_idle_connections_that_held_last_end_it_as_idle_closed() -> None:
    # Idle connections hold until their peer closes them at 6.5; a long request keeps the
    # caller's stream open, so it never departs: the close, not the minimum, ended quiesce.
    conns = [Conn(k, "10.1.0.1", APP, -31.0, 6.5, [(-30.0, -29.9)]) for k in (1, 2, 3)]
    conns.append(Conn(4, "10.1.0.1", APP, -31.0, 9.0, [(-30.0, 9.0)]))
    ended, decision = run(conns, until=30)
    assert decision.ended_by == "idle_closed"
    assert 6.5 <= ended <= 6.5 + 2 * INTERVAL


def test_requests_on_half_closed_connections_are_arrivals() -> None:
    # A client sends and half-closes at once, every 0.5 s until 19.55; the app answers in 0.3 s.
    policy = policy_for({APP}, "10.0.0.1")
    requests = [round(0.05 + 0.5 * k, 3) for k in range(40)]
    samples = []
    for step in range(250):
        t = round(step * INTERVAL, 3)
        conns = tuple(
            Connection(APP, "10.3.0.5", 50000 + i, TcpState.CLOSE_WAIT, 1000 + i, 0, 0, age, age, 0)
            for i, at in enumerate(requests)
            if at <= t < at + 0.3
            for age in (round((t - at) * 1000),)
        )
        samples.append(TrafficSample(t, frozenset({APP}), conns, has_timing=True))
    ended, ended_by = until_ended(samples, BOUNDS, policy)
    assert ended is not None
    assert ended > requests[-1]
    assert ended_by == "lull"
    track = fold(LullTrack(), samples[1], policy)
    assert track.streams["10.3.0.5", APP].open == 0  # counted as arrivals, never as open


def test_a_socket_missing_from_one_sample_is_not_a_departure() -> None:
    policy = policy_for({APP}, "")
    idle = Connection(APP, "10.1.0.1", 40000, 1, 7, 0, 0, 30000, 29900, 100, 200)
    pool = (idle, idle._replace(remote_port=40001, key=8))  # a caller's pool of two
    samples = [
        TrafficSample(round(k * INTERVAL, 6), frozenset(), () if k == 20 else pool, has_timing=True)
        for k in range(25)
    ]
    ended, ended_by = until_ended(samples, BOUNDS, policy)
    assert (ended, ended_by) == (None, None)
    # Gone for good: seen gone by two samples in a row, then it ends.
    samples[21:] = [
        TrafficSample(s.taken_at, frozenset(), (), has_timing=True) for s in samples[21:]
    ]
    assert until_ended(samples, BOUNDS, policy) == (2.1, "peers_closed")


def test_after_a_switch_to_proc_no_close_or_departure_is_claimed() -> None:
    # Netlink sees two idle connections, then falls back to /proc: no timing, inode keys.
    policy = policy_for({APP}, "")

    def conns(timing: bool) -> tuple[Connection, ...]:
        if timing:
            return tuple(
                Connection(APP, "10.1.0.1", 40000 + k, 1, k, 0, 0, 30000, 29900, 100, 200)
                for k in (1, 2)
            )
        return tuple(Connection(APP, "10.1.0.1", 40000 + k, 1, 900 + k) for k in (1, 2))

    samples = [
        TrafficSample(round(k * INTERVAL, 6), frozenset(), conns(k < 10), has_timing=k < 10)
        for k in range(40)
    ]
    track = LullTrack()
    for sample in samples[:11]:
        track = fold(track, sample, policy)
    assert track.streams["10.1.0.1", APP].idle_closed_after is None
    # The callers then close both: without timing that cannot be told from a drained answer.
    samples[20:] = [
        TrafficSample(s.taken_at, frozenset(), (), has_timing=False) for s in samples[20:]
    ]
    ended, ended_by = until_ended(samples, BOUNDS, policy)
    assert ended_by == "lull"
    assert ended == pytest.approx(1.0 + BOUNDS.max_window_seconds)  # the bound, from the switch


def test_app_arrivals_after_an_entry_arrival_are_explained_even_unpaired() -> None:
    # Two requests reach the entry port on one kept connection between two samples (0.12 and
    # 0.18); the proxy passes them on over two connections to the app. tcp_info shows only
    # each connection's latest arrival, so the app's 0.121 has no partner at the entry port
    # (whose latest is 0.18); it came no later than that, so the entry's caller covers it.
    entry = Conn(1, "10.1.0.1", ENTRY, -30.0, None, [(-1.0, -0.99), (0.12, 0.13), (0.18, 0.19)])
    app_a = Conn(2, "127.0.0.6", APP, -30.0, None, [(-0.999, -0.991), (0.121, 0.129)])
    app_b = Conn(3, "127.0.0.6", APP, -30.0, None, [(0.181, 0.189)])
    track = LullTrack()
    for t in (0.0, 0.1, 0.2):
        track = fold(track, read([entry, app_a, app_b], t), MESHED_POLICY)
    assert track.streams[("127.0.0.6", APP)].last_arrival_at == pytest.approx(0.181, abs=0.002)
    assert track.unexplained[APP].last_arrival_at is None
    # One arriving later than anything the entry port saw is a caller it never showed.
    late = Conn(4, "127.0.0.6", APP, -30.0, None, [(0.25, 0.26)])
    track = fold(track, read([entry, app_a, app_b, late], 0.3), MESHED_POLICY)
    assert track.unexplained[APP].last_arrival_at == pytest.approx(0.25, abs=0.002)


def test_the_drain_starts_when_a_caller_leaves_not_before() -> None:
    # An ingress's idle pool to the entry port, dropped at 2.05 when the data plane moved: the
    # second sample without it (2.2) confirms the departure, and the drain may start then.
    pool = [Conn(k, "10.1.0.1", ENTRY, -31.0, 2.05, [(-30.0, -29.9)]) for k in (1, 2, 3)]
    track, reasons = LullTrack(), {}
    for sample in sampled(pool, until=2.5):
        track = fold(track, sample, MESHED_POLICY)
        t = sample.taken_at
        reasons[t] = drain_reason(track, elapsed=t - S, remaining=100.0, bounds=MESHED)
    assert {t for t, why in reasons.items() if why is not None} == {2.2, 2.3, 2.4, 2.5}
    assert reasons[2.2] == "a caller left"


def test_the_drain_starts_after_its_delay_or_before_the_phase_ends() -> None:
    track = LullTrack()
    assert drain_reason(track, elapsed=1.9, remaining=5.0, bounds=MESHED) is None
    assert drain_reason(track, elapsed=2.0, remaining=5.0, bounds=MESHED) == "2 s into quiesce"
    assert drain_reason(track, elapsed=0.5, remaining=0.3, bounds=MESHED) == "the phase's end"


def _busy_pool(drop_at: float) -> list[Conn]:
    """An ingress's two kept connections, each answering a request every 0.1 s until the drop;
    never idle by the sampler's measure (each sent within 250 ms), closed after the last answer.
    """
    conns = [Conn(k, "10.1.0.1", ENTRY, -31.0, drop_at, []) for k in (1, 2)]
    for i in range(int((drop_at + 5.0) / 0.05)):
        at = round(-5.0 + 0.05 * i, 3)
        conns[i % 2].requests.append((at, at + 0.02))
    return conns


def test_a_kept_connection_closed_after_its_answer_is_its_caller_leaving() -> None:
    """Before the drain, only a caller (its Envoy dropping a removed host) closes it."""
    ended, ended_by = until_ended(sampled(_busy_pool(drop_at=2.03), until=10.0))
    assert ended_by == "peers_closed"
    assert ended is not None
    assert 2.03 < ended <= 2.03 + 3 * INTERVAL


def test_once_the_drain_started_the_pods_own_closes_are_no_callers_leaving() -> None:
    track = LullTrack()
    for sample in sampled(_busy_pool(drop_at=2.03), until=2.5):
        track = fold(track, sample, MESHED_POLICY, kept_closes=sample.taken_at < 1.0)
    assert not any(s.departed_at for s in track.streams.values())


def test_a_connection_per_request_never_tells_its_caller_left() -> None:
    """A caller opening one connection per request: each close is just the request's end."""
    conns = [
        Conn(k, "10.1.0.1", ENTRY, at, at + 0.03, [(at + 0.001, at + 0.02)])
        for k, at in enumerate(round(-5.0 + 0.12 * i, 3) for i in range(60))
    ]
    track = LullTrack()
    for sample in sampled(conns, until=3.0):
        track = fold(track, sample, MESHED_POLICY)
    assert not any(s.departed_at for s in track.streams.values())


def test_one_kept_connection_renewed_is_not_its_caller_leaving() -> None:
    """A client capping requests per connection: 3 per connection at 3/s, the next one opened
    at its next request, 0.33 s later. Its closes are no pool dropped, so it holds by its lull.
    """
    asked = [round(-5.0 + k / 3, 3) for k in range(60)]  # until 14.67
    conns = [
        Conn(i, "10.1.0.9", ENTRY, asked[3 * i] - 0.001, asked[3 * i + 2] + 0.02, [])
        for i in range(20)
    ]
    for k, at in enumerate(asked):
        conns[k // 3].requests.append((at, at + 0.01))
    ended, _ = until_ended(sampled(conns, until=20.0))
    assert ended is not None
    assert ended > asked[-1]  # never while it still sends


DIRECT = policy_for({APP}, "10.0.0.1")  # a pod without a proxy: the app's port is the entry


def _ended_direct(conns: list[Conn]) -> float | None:
    ended, _ = until_ended(sampled(conns, until=20.0), BOUNDS, DIRECT)
    return ended


def test_a_client_closing_its_session_after_each_batch_is_not_a_caller_leaving() -> None:
    """Every second a client opens a session, sends 5 requests on each of 4 pooled
    connections and closes them all: young, busy, kept connections closing together."""
    conns: list[Conn] = []
    last = 0.0
    for b in range(20):
        start = -5.0 + b
        for c in range(4):
            asked = [round(start + 0.001 * c + 0.035 * k, 4) for k in range(5)]
            closes = round(asked[-1] + 0.036, 4)
            conns.append(Conn(100 * b + c, "10.1.0.1", APP, start - 0.002, closes, []))
            conns[-1].requests.extend((a, round(a + 0.03, 4)) for a in asked)
            last = max(last, asked[-1])
    ended = _ended_direct(conns)
    assert ended is not None
    assert ended > last


def test_a_pool_of_two_renewed_under_a_request_cap_is_not_a_caller_leaving() -> None:
    """Two connections used in turn at 3 requests/s, each closed after 3 requests."""
    asked = [round(-5.0 + k / 3, 4) for k in range(60)]  # until 14.67
    conns = []
    for i in range(0, len(asked), 6):
        for j in (0, 1):
            mine = asked[i : i + 6][j::2]
            conn = Conn(i + j, "10.1.0.9", APP, mine[0] - 0.001, round(mine[-1] + 0.02, 4), [])
            conn.requests.extend((a, round(a + 0.01, 4)) for a in mine)
            conns.append(conn)
    ended = _ended_direct(conns)
    assert ended is not None
    assert ended > asked[-1]


def test_uploads_on_a_connection_each_are_not_a_caller_leaving() -> None:
    """Two concurrent 0.3 s uploads every 0.8 s, each on a new connection: the body arrives
    across samples, so each looks used twice, yet each is one request."""
    conns = []
    starts = [round(-5.0 + 0.8 * k, 4) for k in range(24)]  # until 13.4
    for k, at in enumerate(starts):
        for j in (0, 1):
            conn = Conn(2 * k + j, "10.1.0.7", APP, at, round(at + 0.32, 4), [])
            conn.requests.extend([(at, at + 0.3), (round(at + 0.15, 4), round(at + 0.3, 4))])
            conns.append(conn)
    ended = _ended_direct(conns)
    assert ended is not None
    assert ended > starts[-1]


def test_a_caller_seen_leaving_then_back_is_never_taken_for_gone_again() -> None:
    stream = Stream(last_arrival_at=1.0, open=0, idle_closed_after=1.5, departed_at=1.6)
    assert departed(stream, Stream(last_arrival_at=1.0))
    back = replace(stream, returned=True)
    assert not departed(back, Stream(last_arrival_at=1.0))
