"""Announce and retire: each registry's steps, retried with backoff, in parallel, by the deadline.

The sequence is written once, here; a back end only implements `Registry` (adapters/registries/).
What to do next and how it ended are pure decisions in sidecar.model.registry.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from sidecar.errors import AdapterError, ConfigError
from sidecar.model.registry import (
    Answer,
    Presence,
    Retirement,
    Step,
    announce_outcome,
    decide,
    next_step,
    record,
    retire_outcome,
    settled,
    worst,
)
from sidecar.model.report import Outcome, Result
from sidecar.settings.registries import RetrySettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

log = structlog.get_logger(__name__)

Seen = Answer | Presence
Entry = dict[str, Any]


class Registry(Protocol):
    """One registry back end. Every call ends by `deadline` (loop time) or raises AdapterError."""

    @property
    def name(self) -> str:
        """How the report names this registry (unique among the configured ones)."""
        ...

    @property
    def can_mark_down(self) -> bool:
        """Whether `mark_down` exists; without it announce reports the registry unsupported."""
        ...

    @property
    def can_force(self) -> bool:
        """Whether `force_remove` exists; without it retire ends at the first read-back."""
        ...

    async def mark_down(self, deadline: float) -> None:
        """Stop traffic in a way the live app's heartbeats cannot undo."""
        ...

    async def deregister(self, deadline: float) -> Answer:
        """Remove our entry: OK, or GONE when the registry says there is none."""
        ...

    async def is_present(self, deadline: float) -> Presence:
        """Read our entry back; UNKNOWN when the answer proves nothing."""
        ...

    async def force_remove(self, deadline: float) -> None:
        """Remove our entry through the admin API, whoever owns it."""
        ...


class Action(Protocol):
    """A standalone call: the app's offline call, a config cleanup (raises AdapterError)."""

    @property
    def name(self) -> str:
        """How the report names it."""
        ...

    async def run(self, deadline: float) -> None:
        """Do it (and verify it, if configured) before `deadline`."""
        ...


@dataclass(frozen=True)
class _Tried:
    """One step after its retries: the last answer, attempts made, last error, cut by time."""

    answer: Seen
    attempts: int
    error: str | None = None
    timed_out: bool = False

    def entry(self, outcome: str) -> Entry:
        entry: Entry = {"outcome": outcome, "attempts": self.attempts}
        if self.error is not None:
            entry["error"] = self.error
        if self.timed_out:
            entry["timed_out"] = True
        return entry


async def _retry(
    call: Callable[[float], Awaitable[Seen]],
    step: Step,
    deadline: float,
    backoff: RetrySettings,
) -> _Tried:
    """Call until the answer settles, attempts run out, or the next try would pass the deadline."""
    loop = asyncio.get_running_loop()
    failed: Seen = Presence.UNKNOWN if step in (Step.READ, Step.READ_AGAIN) else Answer.FAILED
    delay = backoff.first_seconds
    answer, error = failed, None
    for attempt in range(1, backoff.attempts + 1):
        try:
            # The back end bounds its own calls; this only cuts one that ignores the deadline.
            async with asyncio.timeout_at(deadline):
                answer, error = await call(deadline), None
        except TimeoutError:
            return _Tried(failed, attempt, "no answer before the deadline", timed_out=True)
        except AdapterError as e:
            answer, error = failed, str(e)
        except Exception as e:  # a back end's bug must not stop the others
            log.exception("registry_call_failed", step=str(step))
            answer, error = failed, f"{type(e).__name__}: {e}"
        if settled(step, answer):
            return _Tried(answer, attempt, error)
        if attempt < backoff.attempts and loop.time() + delay >= deadline:
            return _Tried(answer, attempt, error, timed_out=True)
        if attempt < backoff.attempts:
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff.max_seconds)
    return _Tried(answer, backoff.attempts, error)


async def _ok(work: Awaitable[None]) -> Answer:
    await work
    return Answer.OK


def _as_answer(seen: Seen) -> Answer:
    return seen if isinstance(seen, Answer) else Answer.FAILED


async def _mark_down(
    registry: Registry, deadline: float, backoff: RetrySettings
) -> tuple[Outcome, Entry]:
    if not registry.can_mark_down:
        return Outcome.SKIPPED, {"outcome": str(Answer.UNSUPPORTED)}
    tried = await _retry(lambda d: _ok(registry.mark_down(d)), Step.MARK_DOWN, deadline, backoff)
    outcome = announce_outcome(_as_answer(tried.answer), timed_out=tried.timed_out)
    entry = tried.entry("marked_down" if outcome is Outcome.OK else "error")
    _log("registry_marked_down", registry.name, outcome, entry)
    return outcome, entry


async def _action(action: Action, deadline: float, backoff: RetrySettings) -> tuple[Outcome, Entry]:
    tried = await _retry(lambda d: _ok(action.run(d)), Step.ACTION, deadline, backoff)
    outcome = announce_outcome(_as_answer(tried.answer), timed_out=tried.timed_out)
    entry = tried.entry("ok" if outcome is Outcome.OK else "error")
    _log("action_finished", action.name, outcome, entry)
    return outcome, entry


def _call(registry: Registry, step: Step) -> Callable[[float], Awaitable[Seen]]:
    if step is Step.DEREGISTER:
        return registry.deregister
    if step is Step.FORCE:
        return lambda d: _ok(registry.force_remove(d))
    return registry.is_present


async def _retire(
    registry: Registry, deadline: float, backoff: RetrySettings
) -> tuple[Outcome, Entry]:
    """Deregister, read back, force-remove if still there, read back again: as next_step says."""
    seen, steps, attempts, error = Retirement(), {}, 0, None
    while (step := next_step(seen, can_force=registry.can_force)) is not Step.DONE:
        tried = await _retry(_call(registry, step), step, deadline, backoff)
        seen = record(seen, step, tried.answer, timed_out=tried.timed_out)
        steps[step.value] = str(tried.answer)
        attempts, error = attempts + tried.attempts, tried.error or error
    registry_outcome = decide(seen)
    outcome = retire_outcome(registry_outcome, timed_out=seen.timed_out)
    entry: Entry = {"outcome": str(registry_outcome), **steps, "attempts": attempts}
    if error is not None:
        entry["error"] = error
    if seen.timed_out:
        entry["timed_out"] = True
    _log("registry_retired", registry.name, outcome, entry)
    return outcome, entry


def _log(event: str, name: str, outcome: Outcome, entry: Entry) -> None:
    level = log.info if outcome in (Outcome.OK, Outcome.SKIPPED) else log.warning
    level(event, name=name, **entry)


def _unique(names: list[str], what: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{what}: names must be unique, got {', '.join(repeated)} twice")


class _RegistryPhase:
    """Registries and actions of one phase, each entry bounded by the phase's deadline."""

    def __init__(
        self,
        registries: Sequence[Registry] = (),
        actions: Sequence[Action] = (),
        *,
        backoff: RetrySettings | None = None,
    ) -> None:
        _unique([r.name for r in registries], "registries")
        _unique([a.name for a in actions], "actions")
        self.registries = tuple(registries)
        self.actions = tuple(actions)
        self.backoff = backoff or RetrySettings()

    async def _actions(self, deadline: float) -> list[tuple[Outcome, Entry]]:
        return list(
            await asyncio.gather(*(_action(a, deadline, self.backoff) for a in self.actions))
        )

    def _result(
        self, registries: list[tuple[Outcome, Entry]], actions: list[tuple[Outcome, Entry]]
    ) -> Result:
        detail: dict[str, Any] = {}
        if registries:
            names = (r.name for r in self.registries)
            detail["registries"] = dict(zip(names, (e for _, e in registries), strict=True))
        if actions:
            names = (a.name for a in self.actions)
            detail["actions"] = dict(zip(names, (e for _, e in actions), strict=True))
        outcome = worst(o for o, _ in [*registries, *actions])
        if outcome is Outcome.SKIPPED:
            detail.setdefault("reason", "no registry step or action configured")
        return Result(outcome, detail)


class Announce(_RegistryPhase):
    """Early in termination: the app's offline call and every registry's mark-down, in parallel."""

    async def run(self, deadline: float) -> Result:
        """Do it all before `deadline` and say how each went."""
        marks, actions = await asyncio.gather(
            asyncio.gather(*(_mark_down(r, deadline, self.backoff) for r in self.registries)),
            self._actions(deadline),
        )
        return self._result(list(marks), actions)


class Retire(_RegistryPhase):
    """After the app exited: every registry's hard removal in parallel, then the config cleanup."""

    async def run(self, deadline: float) -> Result:
        """Do it all before `deadline` and say how each went."""
        retired = await asyncio.gather(
            *(_retire(r, deadline, self.backoff) for r in self.registries)
        )
        return self._result(list(retired), await self._actions(deadline))
