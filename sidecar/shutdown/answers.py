"""Which containers' hooks have been answered, and when: the ledger of releases."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from sidecar.model.report import Release

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sidecar.shutdown.protocols import ShutdownListener

log = structlog.get_logger(__name__)


class HookAnswers:
    """One event per container: set when its hook may return (the kubelet then sends SIGTERM)."""

    def __init__(self, names: Iterable[str], listener: ShutdownListener | None) -> None:
        self._events = {name: asyncio.Event() for name in names}
        self._listener = listener
        self.releases: list[Release] = []

    def release(self, names: Iterable[str], reason: str) -> None:
        """Answer those containers' hooks now; a container is released once only."""
        now = asyncio.get_running_loop().time()
        for name in names:
            event = self._events[name]
            if event.is_set():
                continue
            event.set()
            release = Release(name, now, reason)
            self.releases.append(release)
            log.info("container_released", container=name, reason=reason)
            if self._listener is not None:
                self._listener.container_released(release)

    def is_released(self, name: str) -> bool:
        """Whether that container's hook has been answered."""
        return self._events[name].is_set()

    async def wait(self, name: str) -> None:
        """Return when that container's hook may be answered."""
        await self._events[name].wait()

    def reset(self) -> None:
        """Forget every release (a restarted container's next hook waits again)."""
        for event in self._events.values():
            event.clear()
        self.releases = []
