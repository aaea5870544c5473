"""Pins phase quiesce: the rules of sidecar/model/quiet.py are asked after each sample until they
end it, or the deadline (`cap`); Envoy's inbound drain is asked for once on the way, when a
caller leaves, after its delay, or before the phase ends.
The rules themselves are pinned on traces in tests/model/test_lull.py.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from sidecar.model.quiet import QuietBounds
from sidecar.model.report import Outcome, Result
from sidecar.settings.schema import PhaseSettings
from sidecar.shutdown.flight import quiet_bounds
from sidecar.shutdown.quiesce import quiesce
from tests.shutdown.doubles import (
    APP_PORT,
    Exchange,
    HangingProxy,
    HangingSampler,
    RecordingProxy,
    ScriptedTraffic,
    StuckTraffic,
    sampling,
)

if TYPE_CHECKING:
    from sidecar.shutdown.observe import TrafficMonitor

pytestmark = pytest.mark.looptime

# Samples every 0.25 s from the phase's start, on the fake clock.
WINDOW, MINIMUM, IDLE_HOLD = 2.0, 1.0, 5.0


def bounds(minimum: float = MINIMUM) -> QuietBounds:
    return QuietBounds(0.2, WINDOW, minimum, IDLE_HOLD)


async def test_too_few_arrivals_to_learn_from_wait_the_whole_window_after_the_last() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(
        Exchange(APP_PORT, started + 0.3, started + 0.4, started + 0.6, key=1),
        Exchange(APP_PORT, started + 1.3, started + 1.4, started + 1.6, key=2),
    )
    proxy = RecordingProxy()
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, proxy, deadline=started + 30, bounds=bounds())
    # 1.3 + 2 s = 3.3; the first sample after it is at 3.5.
    assert loop.time() == pytest.approx(started + 3.5)
    assert result.outcome is Outcome.OK
    assert result.detail["ended_by"] == "lull"
    assert result.detail["window_seconds"] == WINDOW
    assert result.detail["ended_after_seconds"] == pytest.approx(3.5)
    assert result.detail["proxy_drain"] == "started"
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(2.2)
    assert proxy.calls == ["drain_inbound"]


async def test_an_idle_keep_alive_connection_holds_quiesce_until_the_idle_hold() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started + 0.3, started + 0.4, key=1))
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, None, deadline=started + 30, bounds=bounds())
    assert loop.time() == pytest.approx(started + IDLE_HOLD)
    assert result.outcome is Outcome.OK
    assert result.detail["ended_by"] == "idle_hold"
    assert (result.detail["established"], result.detail["idle"]) == (1, 1)


async def test_a_caller_closing_its_idle_connection_ends_quiesce_at_the_second_sample() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    # A pool kept alive since before the phase, closed by the caller (it dropped the pod).
    traffic = ScriptedTraffic(
        Exchange(APP_PORT, started - 30, started - 29.9, started + 2.1, key=1),
        Exchange(APP_PORT, started - 31, started - 30.9, started + 2.1, key=2),
    )
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, None, deadline=started + 30, bounds=bounds(0.25))
    # Seen gone at 2.25, and again at 2.5: a departure counts once two samples agree.
    assert loop.time() == pytest.approx(started + 2.5)
    assert result.outcome is Outcome.OK
    assert result.detail["ended_by"] == "peers_closed"
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(32.5)


async def test_the_minimum_holds_even_when_traffic_stopped_long_ago() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started - 60, started - 59, started + 0.1))
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, None, deadline=started + 30, bounds=bounds(1.5))
    assert loop.time() == pytest.approx(started + 1.5)
    assert result.outcome is Outcome.OK
    assert result.detail["ended_by"] == "minimum"
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(61.5)


async def test_no_traffic_at_all_is_quiet_once_the_minimum_has_passed() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with sampling(ScriptedTraffic()) as monitor:
        result = await quiesce(monitor, None, deadline=started + 30, bounds=bounds())
    assert loop.time() == pytest.approx(started + MINIMUM)
    assert result.outcome is Outcome.OK
    assert result.detail["ended_by"] == "no_traffic"
    assert "last_activity_seconds_ago" not in result.detail
    assert "proxy_drain" not in result.detail
    assert result.detail["established"] == 0


async def test_without_tcp_timing_a_new_connection_is_dated_at_the_sample_that_saw_it() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started + 1.1), has_timing=False)
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, None, deadline=started + 30, bounds=bounds(1.5))
    # First seen by the sample at 1.25; quiet 2 s later, though the connection stays open.
    assert loop.time() == pytest.approx(started + 3.25)
    assert result.outcome is Outcome.OK
    assert (result.detail["ended_by"], result.detail["window_seconds"]) == ("lull", WINDOW)
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(2.0)


async def test_a_failing_proxy_drain_is_reported_degraded_and_the_wait_goes_on() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    proxy = RecordingProxy(failing={"drain_inbound"})
    async with sampling(ScriptedTraffic()) as monitor:
        result = await quiesce(monitor, proxy, deadline=started + 30, bounds=bounds())
    assert loop.time() == pytest.approx(started + MINIMUM)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["proxy_drain"] == "failed: drain_inbound: connection refused"
    assert proxy.calls == ["drain_inbound"]


async def test_traffic_that_never_stops_ends_at_the_cap_timed_out() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 3.1
    proxy = RecordingProxy()
    async with sampling(StuckTraffic()) as monitor:
        result = await quiesce(monitor, proxy, deadline=deadline, bounds=bounds())
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["ended_by"] == "cap"
    assert result.detail["ended_after_seconds"] == pytest.approx(3.1)
    assert str(result.detail["waiting_on"]).startswith("a lull of")
    # The last sample, at 3.0, saw a request arrive.
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(0.1)
    assert result.detail["in_flight"] == 1
    assert result.detail["proxy_drain"] == "started"
    assert proxy.calls == ["drain_inbound"]


async def test_a_sampler_that_never_answers_times_out_at_the_deadline_with_no_samples() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    async with sampling(HangingSampler()) as monitor:
        result = await quiesce(monitor, None, deadline=deadline, bounds=bounds())
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {
        "ended_by": "cap",
        "ended_after_seconds": 2.0,
        "window_seconds": WINDOW,
        "waiting_on": "the first sample",
        "samples": 0,
        "sample_errors": 0,
    }


async def test_a_proxy_that_never_answers_the_drain_does_not_keep_the_phase_past_the_deadline() -> (
    None
):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    async with sampling(ScriptedTraffic()) as monitor:
        quiet = quiesce(monitor, HangingProxy(), deadline=deadline, bounds=bounds())
        result = await asyncio.wait_for(quiet, 5)
    assert loop.time() == pytest.approx(deadline)
    assert result.detail["proxy_drain"] == "failed: no answer by the deadline"


def drain_after(seconds: float) -> QuietBounds:
    return QuietBounds(0.2, WINDOW, MINIMUM, IDLE_HOLD, proxy_drain_after_seconds=seconds)


async def _stuck(seconds: float, bounds: QuietBounds) -> tuple[Result, TrafficMonitor]:
    """Quiesce for `seconds` over traffic that never stops, its proxy's drain asked once."""
    loop = asyncio.get_running_loop()
    proxy = RecordingProxy()
    async with sampling(StuckTraffic()) as monitor:
        result = await quiesce(monitor, proxy, deadline=loop.time() + seconds, bounds=bounds)
    assert proxy.calls == ["drain_inbound"]
    return result, monitor


async def test_without_a_caller_leaving_the_drain_starts_after_its_delay() -> None:
    """Draining at once would hide callers leaving; it waits, then moves pinned clients."""
    result, monitor = await _stuck(4.1, drain_after(2.0))
    assert monitor.kept_closes is False  # the pod closes kept connections from then on
    assert result.detail["proxy_drain_after_seconds"] == pytest.approx(2.0)
    assert result.detail["proxy_drain_reason"] == "2 s into quiesce"
    assert result.detail["ended_by"] == "cap"


async def test_a_phase_shorter_than_the_delay_drains_just_before_it_ends() -> None:
    result, _ = await _stuck(1.0, drain_after(2.0))
    assert result.detail["proxy_drain_after_seconds"] == pytest.approx(0.7)
    assert result.detail["proxy_drain_reason"] == "the phase's end"


async def test_a_quiesce_that_ends_before_the_delay_drains_on_its_way_out() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(
        Exchange(APP_PORT, started + 0.3, started + 0.4, started + 0.6, key=1),
        Exchange(APP_PORT, started + 1.3, started + 1.4, started + 1.6, key=2),
    )
    proxy = RecordingProxy()
    async with sampling(traffic) as monitor:
        result = await quiesce(monitor, proxy, deadline=started + 30, bounds=drain_after(10.0))
    assert proxy.calls == ["drain_inbound"]
    assert result.detail["ended_by"] == "lull"
    assert result.detail["proxy_drain_reason"] == "quiesce ended (lull)"
    assert result.detail["proxy_drain_after_seconds"] == result.detail["ended_after_seconds"]


async def test_with_registries_the_drain_starts_at_once() -> None:
    """Registry callers keep idle pooled connections after they moved: only a drain from the
    start, ending each after its answer, keeps those from holding quiesce for the idle hold."""
    phases = PhaseSettings()
    assert quiet_bounds(phases, None).proxy_drain_after_seconds == 2.0
    at_once = quiet_bounds(phases, None, registries=True)
    assert at_once.proxy_drain_after_seconds == 0.0
    result, _ = await _stuck(1.0, at_once)
    assert result.detail["proxy_drain_after_seconds"] == 0.0
    assert result.detail["proxy_drain_reason"] == "0 s into quiesce"


async def test_a_later_quiesce_counts_kept_closes_again_until_its_own_drain() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with sampling(StuckTraffic()) as monitor:
        await quiesce(monitor, RecordingProxy(), deadline=started + 1.0, bounds=drain_after(0.0))
        assert monitor.kept_closes is False
        await quiesce(monitor, None, deadline=loop.time() + 1.0, bounds=drain_after(0.0))
        assert monitor.kept_closes is True  # no drain this time: the pod closed nothing
