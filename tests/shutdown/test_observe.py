"""The traffic monitor: interval stretched for costly samples; a failing source counted, named."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.model.traffic import TrafficSample, policy_for
from sidecar.shutdown.observe import TrafficMonitor, next_delay

pytestmark = pytest.mark.looptime


@pytest.mark.parametrize(
    ("interval", "cost", "delay"),
    [
        (0.25, 0.01, 0.24),  # cheap samples keep the configured interval
        (0.25, 0.1, 0.4),  # a 100 ms sample: one every 0.5 s, 20 % of a core
        (0.25, 0.0, 0.25),
    ],
)
def test_expensive_samples_stretch_the_interval_to_a_fifth_of_a_core(
    interval: float, cost: float, delay: float
) -> None:
    assert next_delay(interval, cost) == pytest.approx(delay)


class SlowSource:
    def __init__(self, cost_seconds: float) -> None:
        self.cost = cost_seconds
        self.started: list[float] = []

    async def sample(self) -> TrafficSample:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        await asyncio.sleep(self.cost)
        return TrafficSample(loop.time(), frozenset(), (), has_timing=True)


async def test_the_monitor_samples_at_its_interval_and_slows_down_when_samples_are_costly() -> None:
    source = SlowSource(1.0)
    monitor = TrafficMonitor(source, policy_for({8080}, ""), interval_seconds=0.25)
    monitor.start()
    loop = asyncio.get_running_loop()
    assert await monitor.wait_until(lambda m: m.samples >= 3, loop.time() + 60)
    await monitor.stop()
    gaps = [b - a for a, b in zip(source.started, source.started[1:], strict=False)]
    assert gaps[:2] == [pytest.approx(5.0), pytest.approx(5.0)]


async def test_a_failing_source_is_counted_and_never_satisfies_a_wait() -> None:
    class Broken:
        async def sample(self) -> TrafficSample:
            raise OSError("netlink gone")

    monitor = TrafficMonitor(Broken(), policy_for({8080}, ""), interval_seconds=0.25)
    monitor.start()
    loop = asyncio.get_running_loop()
    assert not await monitor.wait_until(lambda _: True, loop.time() + 2)
    await monitor.stop()
    assert monitor.errors >= 8
    assert monitor.snapshot()["last_sample_error"] == "netlink gone"
