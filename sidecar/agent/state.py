"""Hook bookkeeping: how many hooks came, were refused, and are held open right now."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class HookBook:
    """Counts kept by the server and read by /status and the runtime's exit decision."""

    received: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    held: int = 0
    #: Set by the first authorised hook for a known container.
    first_hook: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set whenever no hook is held, so the runtime can wait for the last answer to go out.
    none_held: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.none_held.set()

    def hold(self, container: str) -> None:
        """A hook for `container` is now waiting."""
        self.received[container] += 1
        self.held += 1
        self.none_held.clear()
        self.first_hook.set()

    def let_go(self) -> None:
        """A held hook got its answer, or its caller went away."""
        self.held -= 1
        if self.held == 0:
            self.none_held.set()
