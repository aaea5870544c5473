"""Preparing for a deletion before it is allowed (POST /prepare): announce, then an action, once.

The deletion webhook (sidecar/injector/guarantee.py) asks for it and refuses the DELETE until
the answer says prepared. Each step that ended well is never run again; a step still running
goes on after the call is answered (bounded by its own deadline), so the next call finds it done.
Preparing never answers a hook, never drains and never quits anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.errors import AdapterError
from sidecar.model.report import Outcome, Result

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sidecar.shutdown.protocols import RegistryPhase
    from sidecar.shutdown.registries import Action

log = structlog.get_logger(__name__)

#: How long one call waits for the steps before it answers "not yet"; below the webhook's
#: own wait for the agent (1.5 s), which is below the configuration's timeoutSeconds (5).
ANSWER_WITHIN_SECONDS = 1.0
#: How long one attempt at the steps may run, answered or not; the next call starts a new one.
ATTEMPT_SECONDS = 30.0
_GOOD = (Outcome.OK, Outcome.SKIPPED)


@dataclass(frozen=True)
class Prepared:
    """What /prepare answers: prepared once every step ended well, and how each went."""

    prepared: bool
    steps: dict[str, dict[str, Any]]

    def document(self) -> dict[str, Any]:
        """The JSON body."""
        return {"prepared": self.prepared, "steps": self.steps}


class Preparation:
    """Announce and the configured preparation action, each done until it succeeds once."""

    def __init__(
        self,
        announce: RegistryPhase | None,
        action: Action | None = None,
        *,
        answer_within_seconds: float = ANSWER_WITHIN_SECONDS,
        attempt_seconds: float = ATTEMPT_SECONDS,
    ) -> None:
        self._announce = announce
        self._action = action
        self._answer_within = answer_within_seconds
        self._attempt_seconds = attempt_seconds
        #: The last result of each step; a step whose result is good is never run again.
        self._results: dict[str, Result] = {}
        self._attempt: asyncio.Task[None] | None = None
        self.attempts = 0

    @property
    def prepared(self) -> bool:
        """Whether every step has ended well."""
        return all(self._done(step) for step in ("announce", "action"))

    async def prepare(self) -> Prepared:
        """Start (or join) an attempt at the steps not yet done; answer within the bound."""
        if not self.prepared and (self._attempt is None or self._attempt.done()):
            self.attempts += 1
            self._attempt = asyncio.create_task(self._run(), name="prepare")
        if self._attempt is not None and not self._attempt.done():
            # A caller hanging up, or the bound passing, never cancels the attempt itself.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._answer_within):
                    await asyncio.shield(self._attempt)
        return Prepared(self.prepared, {step: self._entry(step) for step in ("announce", "action")})

    async def close(self) -> None:
        """Cancel an attempt still running (process exit)."""
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._attempt

    def _done(self, step: str) -> bool:
        if (self._announce if step == "announce" else self._action) is None:
            return True
        result = self._results.get(step)
        return result is not None and result.outcome in _GOOD

    def _entry(self, step: str) -> dict[str, Any]:
        if (self._announce if step == "announce" else self._action) is None:
            return {"outcome": str(Outcome.SKIPPED), "reason": "not configured"}
        result = self._results.get(step)
        if result is None:
            return {"outcome": "in_progress"}
        return {"outcome": str(result.outcome), **result.detail}

    async def _run(self) -> None:
        """One attempt: the steps not done yet, in parallel, by one deadline."""
        deadline = asyncio.get_running_loop().time() + self._attempt_seconds
        steps: list[Awaitable[None]] = []
        if not self._done("announce") and self._announce is not None:
            steps.append(self._step("announce", self._announce.run(deadline)))
        if not self._done("action") and self._action is not None:
            steps.append(self._step("action", self._act(self._action, deadline)))
        await asyncio.gather(*steps)

    async def _step(self, step: str, work: Awaitable[Result]) -> None:
        self._results.pop(step, None)  # in progress again
        try:
            result = await work
        except Exception as e:  # a bug in a step must not leave it "in progress" for ever
            log.exception("prepare_step_failed", step=step)
            result = Result(Outcome.ERROR, {"error": f"{type(e).__name__}: {e}"})
        self._results[step] = result
        level = log.info if result.outcome in _GOOD else log.warning
        level("prepare_step_finished", step=step, outcome=str(result.outcome), **result.detail)

    @staticmethod
    async def _act(action: Action, deadline: float) -> Result:
        try:
            async with asyncio.timeout_at(deadline):
                await action.run(deadline)
        except TimeoutError:
            return Result(Outcome.TIMED_OUT, {"name": action.name, "error": "no end in time"})
        except AdapterError as e:
            return Result(Outcome.ERROR, {"name": action.name, "error": str(e)})
        return Result(Outcome.OK, {"name": action.name})
