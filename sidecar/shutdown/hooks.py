"""The one owner of hook state: which hooks came, which are held, and when each is answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING

import structlog

from sidecar.model.flight import HookCounts
from sidecar.model.report import Release
from sidecar.shutdown.journal import guarded

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sidecar.shutdown.protocols import ShutdownListener

log = structlog.get_logger(__name__)


class HookLedger:
    """One event per container, set when its hook may return (the kubelet then sends SIGTERM).

    It also counts what the server saw and holds the timers that answer each group at its
    latest time, so that nothing else keeps a copy of hook state.
    """

    def __init__(self, names: Iterable[str], listener: ShutdownListener | None) -> None:
        self._answered = {name: asyncio.Event() for name in names}
        self._listener = listener
        self._releases: list[Release] = []
        #: Containers whose hooks came during this flight (a restart releases only those).
        self._requested: set[str] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._received: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._held = 0
        self._first_hook = asyncio.Event()
        self._all_requested = asyncio.Event()
        self._none_held = asyncio.Event()
        self._none_held.set()

    # -- what the server reports --------------------------------------------------------------

    def knows(self, name: str) -> bool:
        """Whether the plan has a container of that name."""
        return name in self._answered

    def reject(self, reason: str) -> None:
        """A hook was refused (bad token, unknown container)."""
        self._rejected[reason] += 1

    def request(self, name: str) -> None:
        """A hook for `name` belongs to this flight."""
        self._requested.add(name)
        if self._requested >= self._answered.keys():
            self._all_requested.set()

    async def wait_all_requested(self) -> None:
        """Return once every container's hook has come in this flight, as in a deletion."""
        await self._all_requested.wait()

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Count a hook for `name` as waiting while the block runs."""
        self._received[name] += 1
        self._held += 1
        self._none_held.clear()
        self._first_hook.set()
        try:
            yield
        finally:
            self._held -= 1
            if self._held == 0:
                self._none_held.set()

    async def wait_first_hook(self) -> None:
        """Return once an authorised hook for a known container has come."""
        await self._first_hook.wait()

    async def wait_none_held(self) -> None:
        """Return once no hook is waiting for its answer."""
        await self._none_held.wait()

    # -- answers ------------------------------------------------------------------------------

    def release(self, names: Iterable[str], reason: str) -> None:
        """Answer those containers' hooks now; a container is released once only."""
        now = asyncio.get_running_loop().time()
        for name in names:
            answered = self._answered[name]
            if answered.is_set():
                continue
            answered.set()
            release = Release(name, now, reason)
            self._releases.append(release)
            log.info("container_released", container=name, reason=reason)
            if self._listener is not None:
                with guarded("container_released"):
                    self._listener.container_released(release)

    def release_requested(self, reason: str) -> None:
        """Answer every container whose hook came in this flight."""
        self.release(sorted(self._requested), reason)

    def release_at(self, schedule: Iterable[tuple[float, tuple[str, ...]]]) -> None:
        """Replace the timers: at each loop time, answer those containers (reason `deadline`)."""
        self.cancel_timers()
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_at(when, self.release, names, "deadline") for when, names in schedule
        ]

    def cancel_timers(self) -> None:
        """Drop every pending timer."""
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    def is_released(self, name: str) -> bool:
        """Whether that container's hook has been answered."""
        return self._answered[name].is_set()

    async def wait(self, name: str) -> None:
        """Return when that container's hook may be answered."""
        await self._answered[name].wait()

    @property
    def requested(self) -> frozenset[str]:
        """Containers whose hooks came during this flight."""
        return frozenset(self._requested)

    @property
    def releases(self) -> tuple[Release, ...]:
        """Every release of this flight, in order."""
        return tuple(self._releases)

    def counts(self) -> HookCounts:
        """What the server saw, as an immutable value."""
        return HookCounts(dict(self._received), dict(self._rejected), self._held)

    def reset(self) -> None:
        """Start a new flight: forget releases, requests and timers; counts stay."""
        self.cancel_timers()
        for answered in self._answered.values():
            answered.clear()
        self._releases = []
        self._requested = set()
        self._all_requested.clear()
