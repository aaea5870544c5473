"""Faults the API stand-in injects on purpose, and the middleware that records and applies them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from sidecar.drill.control_plane.responses import status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiohttp.typedefs import Middleware


@dataclass
class Faults:
    """What the stand-in does wrong on purpose; the tests and the drill set these."""

    #: Answer matching API calls with this HTTP status instead of serving them.
    status: int | None = None
    #: Only calls whose path contains this text get the status or the delay (None: every one).
    path_contains: str | None = None
    #: How many calls get the status (None: until cleared).
    times: int | None = None
    #: Every API call waits this long before being served.
    delay_seconds: float = 0.0
    #: The next N watches from a specific revision find it expired (ERROR 410, E5).
    expire_next_watches: int = 0
    #: Each watch opened takes the first of these lines and sends it as it is, before any
    #: event: text that is not JSON, JSON that is not an event, an event of no known type...
    watch_garbage: list[bytes] = field(default_factory=list)
    #: The next N watches send their first event cut in half, without its newline, and end
    #: there cleanly: a truncated last line.
    truncate_next_watches: int = 0

    def applies_to(self, path: str) -> bool:
        """Whether the faults concern calls to this path."""
        return not self.path_contains or self.path_contains in path

    def failure_for(self, path: str) -> int | None:
        """The status to answer this path with, if a fault applies (and count it)."""
        if self.status is None or not self.applies_to(path):
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.status

    def take_expired_watch(self) -> bool:
        """Whether the watch opening now finds its revision expired (and count it)."""
        if self.expire_next_watches <= 0:
            return False
        self.expire_next_watches -= 1
        return True

    def take_watch_garbage(self) -> bytes | None:
        """The line the watch opening now sends before its events, if any (and take it)."""
        return self.watch_garbage.pop(0) if self.watch_garbage else None

    def take_truncated_watch(self) -> bool:
        """Whether the watch opening now cuts its first event and ends (and count it)."""
        if self.truncate_next_watches <= 0:
            return False
        self.truncate_next_watches -= 1
        return True


_REASONS = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests"}


def middleware(
    faults: Callable[[], Faults], requests: list[tuple[str, str, dict[str, str]]]
) -> Middleware:
    """Record each request in `requests`, then delay or refuse it as the current faults say."""

    @web.middleware
    async def apply(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        requests.append((request.method, request.path, dict(request.query)))
        now = faults()
        if now.delay_seconds and now.applies_to(request.path):
            await asyncio.sleep(now.delay_seconds)
        code = now.failure_for(request.path)
        if code is not None:
            return status(code, _REASONS.get(code, "InternalError"), f"injected fault: {code}")
        return await handler(request)

    return apply
