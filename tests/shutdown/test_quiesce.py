"""Pins phase quiesce: Envoy's inbound drain is asked for once, then a quiet window is awaited,
counted from the last inbound data and never shorter than the minimum, until the deadline.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.model.report import Outcome
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

pytestmark = pytest.mark.looptime

# Samples every 0.25 s from the phase's start, on the fake clock.
WINDOW, MINIMUM = 2.0, 1.0


async def test_the_quiet_window_counts_from_the_last_inbound_request() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(
        Exchange(APP_PORT, started + 0.3, started + 0.4, key=1),
        Exchange(APP_PORT, started + 1.3, started + 1.4, key=2),  # kept alive afterwards
    )
    proxy = RecordingProxy()
    async with sampling(traffic) as monitor:
        result = await quiesce(
            monitor, proxy, deadline=started + 30, window_seconds=WINDOW, min_seconds=MINIMUM
        )
    # 1.3 + 2 s = 3.3; the first sample after it is at 3.5.
    assert loop.time() == pytest.approx(started + 3.5)
    assert result.outcome is Outcome.OK
    assert result.detail["proxy_drain"] == "started"
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(2.2)
    assert (result.detail["established"], result.detail["idle"]) == (2, 2)
    assert proxy.calls == ["drain_inbound"]


async def test_activity_before_the_phase_began_counts_towards_the_quiet_window() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started - 1.5, started - 1.4))
    async with sampling(traffic) as monitor:
        result = await quiesce(
            monitor, None, deadline=started + 30, window_seconds=WINDOW, min_seconds=0.25
        )
    assert loop.time() == pytest.approx(started + 0.5)
    assert result.outcome is Outcome.OK
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(2.0)


async def test_the_minimum_holds_even_when_traffic_stopped_long_ago() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started - 60, started - 59))
    async with sampling(traffic) as monitor:
        result = await quiesce(
            monitor, None, deadline=started + 30, window_seconds=WINDOW, min_seconds=1.5
        )
    assert loop.time() == pytest.approx(started + 1.5)
    assert result.outcome is Outcome.OK
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(61.5)


async def test_no_traffic_at_all_is_quiet_once_the_minimum_has_passed() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with sampling(ScriptedTraffic()) as monitor:
        result = await quiesce(
            monitor, None, deadline=started + 30, window_seconds=WINDOW, min_seconds=MINIMUM
        )
    assert loop.time() == pytest.approx(started + MINIMUM)
    assert result.outcome is Outcome.OK
    assert "last_activity_seconds_ago" not in result.detail
    assert "proxy_drain" not in result.detail
    assert result.detail["established"] == 0


async def test_without_tcp_timing_a_new_connection_is_dated_at_the_sample_that_saw_it() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(APP_PORT, started + 1.1), has_timing=False)
    async with sampling(traffic) as monitor:
        result = await quiesce(
            monitor, None, deadline=started + 30, window_seconds=WINDOW, min_seconds=1.5
        )
    # First seen by the sample at 1.25; quiet 2 s later, though the connection stays open.
    assert loop.time() == pytest.approx(started + 3.25)
    assert result.outcome is Outcome.OK
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(2.0)


async def test_a_failing_proxy_drain_is_reported_degraded_and_the_wait_goes_on() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    proxy = RecordingProxy(failing={"drain_inbound"})
    async with sampling(ScriptedTraffic()) as monitor:
        result = await quiesce(
            monitor, proxy, deadline=started + 30, window_seconds=WINDOW, min_seconds=MINIMUM
        )
    assert loop.time() == pytest.approx(started + MINIMUM)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["proxy_drain"] == "failed: drain_inbound: connection refused"
    assert proxy.calls == ["drain_inbound"]


async def test_traffic_that_never_stops_times_out_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 3.1
    proxy = RecordingProxy()
    async with sampling(StuckTraffic()) as monitor:
        result = await quiesce(
            monitor, proxy, deadline=deadline, window_seconds=WINDOW, min_seconds=MINIMUM
        )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    # The last sample, at 3.0, saw a request arrive.
    assert result.detail["last_activity_seconds_ago"] == pytest.approx(0.1)
    assert result.detail["in_flight"] == 1
    assert result.detail["proxy_drain"] == "started"
    assert proxy.calls == ["drain_inbound"]


async def test_a_sampler_that_never_answers_times_out_at_the_deadline_with_no_samples() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    async with sampling(HangingSampler()) as monitor:
        result = await quiesce(
            monitor, None, deadline=deadline, window_seconds=WINDOW, min_seconds=MINIMUM
        )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"samples": 0, "sample_errors": 0}


async def test_a_proxy_that_never_answers_the_drain_does_not_keep_the_phase_past_the_deadline() -> (
    None
):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    async with sampling(ScriptedTraffic()) as monitor:
        quiet = quiesce(
            monitor, HangingProxy(), deadline=deadline, window_seconds=WINDOW, min_seconds=MINIMUM
        )
        result = await asyncio.wait_for(quiet, 5)
    assert loop.time() == pytest.approx(deadline)
    assert result.detail["proxy_drain"] == "failed: no answer by the deadline"
