"""The hook ledger: answered once, timers fire at their time, counts survive flights."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.model.report import PhaseRecord, Release
from sidecar.shutdown.hooks import HookLedger

pytestmark = pytest.mark.looptime


class Told:
    """A ShutdownListener that keeps what it was told."""

    def __init__(self) -> None:
        self.released: list[Release] = []

    def phase_finished(self, record: PhaseRecord) -> None:
        raise AssertionError(record)

    def container_released(self, release: Release) -> None:
        self.released.append(release)

    def shutdown_finished(self, summary: dict[str, object]) -> None:
        raise AssertionError(summary)


async def test_a_container_is_released_once_with_the_first_reason_and_the_listener_is_told() -> (
    None
):
    told = Told()
    ledger = HookLedger(["app", "envoy"], told)
    ledger.release(["app"], "turn")
    ledger.release(["app", "envoy"], "deadline")
    assert [(r.container, r.reason) for r in ledger.releases] == [
        ("app", "turn"),
        ("envoy", "deadline"),
    ]
    assert [(r.container, r.reason) for r in told.released] == [
        ("app", "turn"),
        ("envoy", "deadline"),
    ]
    assert ledger.is_released("app")
    await asyncio.wait_for(ledger.wait("envoy"), 0.1)


async def test_timers_answer_each_container_at_its_time_and_can_be_replaced() -> None:
    ledger = HookLedger(["app", "envoy"], None)
    loop = asyncio.get_running_loop()
    start = loop.time()
    ledger.release_at([(start + 5, ("app",)), (start + 9, ("app", "envoy"))])
    # A replan moves both times earlier; the first schedule must not fire any more.
    ledger.release_at([(start + 2, ("app",)), (start + 3, ("app", "envoy"))])
    await ledger.wait("app")
    assert loop.time() == pytest.approx(start + 2)
    await ledger.wait("envoy")
    assert loop.time() == pytest.approx(start + 3)
    assert {r.reason for r in ledger.releases} == {"deadline"}


async def test_cancelled_timers_never_fire() -> None:
    ledger = HookLedger(["app"], None)
    loop = asyncio.get_running_loop()
    ledger.release_at([(loop.time() + 1, ("app",))])
    ledger.cancel_timers()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ledger.wait("app"), 5)
    assert ledger.releases == ()


async def test_held_hooks_are_counted_until_their_block_ends() -> None:
    ledger = HookLedger(["app"], None)
    with ledger.holding("app"):
        await asyncio.wait_for(ledger.wait_first_hook(), 0.1)
        assert ledger.counts().held == 1
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ledger.wait_none_held(), 1)
    await asyncio.wait_for(ledger.wait_none_held(), 0.1)
    assert ledger.counts().held == 0
    assert ledger.counts().received == {"app": 1}


async def test_a_new_flight_forgets_releases_and_requests_but_keeps_the_counts() -> None:
    ledger = HookLedger(["app", "envoy"], None)
    ledger.reject("token")
    ledger.request("app")
    with ledger.holding("app"):
        ledger.release_requested("restart")
    ledger.release_at([(asyncio.get_running_loop().time() + 1, ("envoy",))])
    ledger.reset()
    assert ledger.releases == ()
    assert ledger.requested == frozenset()
    assert not ledger.is_released("app")
    with pytest.raises(TimeoutError):  # the old flight's timer was dropped with it
        await asyncio.wait_for(ledger.wait("envoy"), 5)
    counts = ledger.counts()
    assert (counts.received, counts.rejected) == ({"app": 1}, {"token": 1})


async def test_release_requested_answers_only_the_containers_whose_hooks_came() -> None:
    ledger = HookLedger(["app", "sidekick", "envoy"], None)
    ledger.request("sidekick")
    ledger.release_requested("restart")
    assert [(r.container, r.reason) for r in ledger.releases] == [("sidekick", "restart")]
    assert ledger.knows("envoy")
    assert not ledger.knows("db")
