"""Pins phase drain: it waits for in-flight requests on the chosen ports, never for idle
keep-alive connections, says when it could not tell them apart, and ends by the deadline.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.model.report import Outcome
from sidecar.shutdown.drain import drain
from tests.shutdown.doubles import (
    APP_PORT,
    PROXY_PORT,
    Exchange,
    HangingSampler,
    ScriptedTraffic,
    sampling,
)

pytestmark = pytest.mark.looptime


def idle_keep_alive(port: int, key: int, now: float) -> Exchange:
    """A connection whose last request was answered ten seconds ago, left open by the client."""
    return Exchange(port, now - 10.1, now - 10, key=key)


async def test_idle_keep_alive_connections_do_not_hold_the_drain() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(
        idle_keep_alive(APP_PORT, 1, started), idle_keep_alive(PROXY_PORT, 2, started)
    )
    async with sampling(traffic) as monitor:
        result = await drain(monitor, deadline=started + 10)
    assert loop.time() == started
    assert result.outcome is Outcome.OK
    assert (result.detail["established"], result.detail["idle"]) == (2, 2)
    assert result.detail["in_flight"] == 0
    assert result.detail["in_flight_by_port"] == {}


async def test_a_request_in_flight_holds_the_drain_until_its_answer_has_gone_out() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(
        Exchange(APP_PORT, started - 0.5, started + 1.6, key=1),
        idle_keep_alive(APP_PORT, 2, started),
    )
    async with sampling(traffic) as monitor:
        result = await drain(monitor, deadline=started + 10)
    # Answered at 1.6 and still sending for 250 ms: the sample at 1.75 counts it, 2.0 does not.
    assert loop.time() == pytest.approx(started + 2.0)
    assert result.outcome is Outcome.OK
    assert (result.detail["in_flight"], result.detail["idle"]) == (0, 2)


async def test_only_the_ports_asked_for_are_waited_on() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic(Exchange(PROXY_PORT, started - 1, key=1))  # never answered
    async with sampling(traffic) as monitor:
        result = await drain(monitor, deadline=started + 10, ports=frozenset({APP_PORT}))
    assert loop.time() == started
    assert result.outcome is Outcome.OK
    # The detail still shows every port, so the busy one is not hidden.
    assert result.detail["in_flight_by_port"] == {str(PROXY_PORT): 1}


async def test_a_request_that_is_never_answered_times_out_at_the_deadline_naming_its_port() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 4.1
    traffic = ScriptedTraffic(
        Exchange(PROXY_PORT, started - 1, key=1), idle_keep_alive(APP_PORT, 2, started)
    )
    async with sampling(traffic) as monitor:
        result = await drain(monitor, deadline=deadline)
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["in_flight_by_port"] == {str(PROXY_PORT): 1}
    assert (result.detail["in_flight"], result.detail["idle"]) == (1, 1)


async def test_without_tcp_timing_every_open_connection_counts_and_the_drain_is_degraded() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Idle in truth, but nothing says so: it counts until the client closes it at 1.2.
    keep_alive = Exchange(APP_PORT, started - 5.1, started - 5, closed_at=started + 1.2)
    async with sampling(ScriptedTraffic(keep_alive, has_timing=False)) as monitor:
        result = await drain(monitor, deadline=started + 10)
    assert loop.time() == pytest.approx(started + 1.25)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["note"] == (
        "no per-socket timing: every open connection was counted as in flight"
    )


async def test_without_tcp_timing_an_open_connection_times_out_rather_than_counting_as_idle() -> (
    None
):
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 3.1
    keep_alive = Exchange(APP_PORT, started - 5.1, started - 5)
    async with sampling(ScriptedTraffic(keep_alive, has_timing=False)) as monitor:
        result = await drain(monitor, deadline=deadline)
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["in_flight_by_port"] == {str(APP_PORT): 1}


async def test_a_sampler_that_never_answers_times_out_at_the_deadline_with_no_samples() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    async with sampling(HangingSampler()) as monitor:
        result = await drain(monitor, deadline=deadline)
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"samples": 0, "sample_errors": 0}
