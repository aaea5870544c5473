"""The one traffic sampler of a shutdown: latest sample and lull track, awaited by predicate."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from sidecar.model.lull import LullTrack, fold
from sidecar.model.traffic import TrafficPolicy, TrafficSample, TrafficView, assess

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.shutdown.protocols import TrafficSource

log = structlog.get_logger(__name__)

#: A sample may take at most this share of the time between two samples: with tens of
#: thousands of sockets one sample costs tens of milliseconds (docs/benchmarks.md), and the
#: sampler must not starve the app it is protecting.
MAX_SAMPLER_SHARE = 0.2


def next_delay(interval_seconds: float, sample_seconds: float) -> float:
    """Seconds to wait before the next sample, so sampling stays within its share of a core."""
    period = max(interval_seconds, sample_seconds / MAX_SAMPLER_SHARE)
    return max(0.0, period - sample_seconds)


class TrafficMonitor:
    """Samples at a stated interval while a shutdown runs; phases wait on predicates over it.

    Polling is the only way to see sockets, so there is exactly one poller, and it runs only
    between the first hook and the end of the shutdown (no cost while the pod serves).
    """

    def __init__(
        self, source: TrafficSource, policy: TrafficPolicy, interval_seconds: float
    ) -> None:
        self._source = source
        self.policy = policy
        self._interval = interval_seconds
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.latest: TrafficSample | None = None
        self.view: TrafficView | None = None
        #: What quiesce decides on (sidecar/model/lull.py), folded from every sample.
        self.lull = LullTrack()
        #: Whether a kept connection's close counts as its caller leaving; quiesce clears it
        #: before the proxy's drain, which closes kept connections itself.
        self.kept_closes = True
        self.samples = 0
        self.errors = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Begin sampling (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="traffic-sampler")

    async def stop(self) -> None:
        """Stop sampling and wait for the sampler to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                sample = await self._source.sample()
            except Exception as e:  # the outside world failing is an outcome, never a crash
                self.errors += 1
                self.last_error = str(e)
                if self.errors in (1, 10, 100):
                    log.warning("traffic_sample_failed", error=str(e), failures=self.errors)
            else:
                # Tens of milliseconds with ten thousand sockets (docs/benchmarks.md): off the
                # loop. Only this task folds, so the track cannot change meanwhile.
                self.view, self.lull = await asyncio.to_thread(self._digest, self.lull, sample)
                self.latest = sample
                self.samples += 1
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(next_delay(self._interval, loop.time() - started))

    def _digest(self, lull: LullTrack, sample: TrafficSample) -> tuple[TrafficView, LullTrack]:
        kept = self.kept_closes
        return assess(sample, self.policy), fold(lull, sample, self.policy, kept_closes=kept)

    async def wait_until(
        self, predicate: Callable[[TrafficMonitor], bool], deadline: float
    ) -> bool:
        """Wait until `predicate(self)` holds after a sample; False if `deadline` came first."""
        try:
            async with asyncio.timeout_at(deadline), self._changed:
                await self._changed.wait_for(lambda: self.latest is not None and predicate(self))
        except TimeoutError:
            return False
        return True

    async def next_sample(self, deadline: float) -> bool:
        """Wait for the next sample; False if `deadline` came first."""
        try:
            async with asyncio.timeout_at(deadline), self._changed:
                await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def snapshot(self) -> dict[str, object]:
        """The latest figures, for phase details and /status."""
        view = self.view
        return {
            "samples": self.samples,
            "sample_errors": self.errors,
            **({"last_sample_error": self.last_error} if self.last_error else {}),
            **(
                {
                    "established": view.established,
                    "in_flight": view.in_flight,
                    "idle": view.idle,
                    "close_wait": view.close_wait,
                }
                if view is not None
                else {}
            ),
        }
