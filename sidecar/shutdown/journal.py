"""The journal of one flight: each phase run under its deadline, recorded, logged and summarised."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.model.report import Outcome, PhaseRecord, Result, summarise

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from sidecar.model.deadline import Budget
    from sidecar.model.report import Phase, Release
    from sidecar.shutdown.protocols import ShutdownListener

log = structlog.get_logger(__name__)

#: A phase that ignores its own deadline is cut this long after it.
OVERRUN_SECONDS = 0.1


class Journal:
    """Records every phase of a flight, in order, and the summary once it ends."""

    def __init__(self, listener: ShutdownListener | None) -> None:
        self._listener = listener
        self.records: list[PhaseRecord] = []
        #: The phase that started last.
        self.current: Phase | None = None
        self.summary: dict[str, Any] | None = None

    def reset(self) -> None:
        """Start a new flight."""
        self.records, self.current, self.summary = [], None, None

    async def run(
        self,
        phase: Phase,
        work: Coroutine[Any, Any, Result],
        deadline: float,
        *,
        group: int | None = None,
        beside: bool = False,
    ) -> Result:
        """Run one phase; it never raises, and never outlives its deadline by much.

        A phase run `beside` the sequence (announce) is recorded but is not the current one.
        """
        started = asyncio.get_running_loop().time()
        if not beside:
            self.current = phase
        with structlog.contextvars.bound_contextvars(phase=str(phase)):
            log.info("phase_started", group=group)
            try:
                async with asyncio.timeout_at(deadline + OVERRUN_SECONDS):
                    result = await work
            except TimeoutError:
                result = Result(Outcome.TIMED_OUT, {"reason": "phase overran its deadline"})
            except Exception as e:  # a bug or an adapter failure must not stop the sequence
                log.exception("phase_failed")
                result = Result(Outcome.ERROR, {"error": f"{type(e).__name__}: {e}"})
            self.record(phase, started, result, group=group)
        return result

    def record(
        self, phase: Phase, started: float, result: Result, *, group: int | None = None
    ) -> None:
        """Write down a finished phase and tell the listener."""
        ended = asyncio.get_running_loop().time()
        record = PhaseRecord(phase, started, ended, result.outcome, result.detail, group)
        self.records.append(record)
        log.info(
            "phase_finished",
            phase=record.label,
            outcome=str(result.outcome),
            duration_seconds=round(record.duration, 3),
            **result.detail,
        )
        if self._listener is not None:
            with guarded("phase_finished"):
                self._listener.phase_finished(record)

    def finish(self, budget: Budget, releases: tuple[Release, ...]) -> dict[str, Any]:
        """The canonical `shutdown_finished` line, logged once and told to the listener."""
        self.summary = summarise(
            started_at=budget.started_at,
            ended_at=asyncio.get_running_loop().time(),
            hard_deadline=budget.hard_deadline,
            phases=self.records,
            releases=list(releases),
        )
        log.info("shutdown_finished", **self.summary)
        if self._listener is not None:
            with guarded("shutdown_finished"):
                self._listener.shutdown_finished(self.summary)
        return self.summary


@contextlib.contextmanager
def guarded(call: str) -> Iterator[None]:
    """Run a listener's call; its bug is logged, and never stops the shutdown or an answer."""
    try:
        yield
    except Exception:
        log.exception("listener_failed", call=call)
