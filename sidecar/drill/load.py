"""The drill's load generator: requests at a fixed rate, each one accounted for.

Open loop, like real clients: a request is sent when its time comes, whether or not earlier
ones have finished. Every request ends as a success, an HTTP error or a transport error;
one still running when the run stops is waited for, and counted as a transport error
(`unfinished`) if it does not end in time. Nothing is dropped from the count.

Beside it, a pinned client stands for a caller that reached the pod through a ClusterIP: it
keeps its keep-alive connection, and resolves again only when the server says
`Connection: close` (a drain) or the connection breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from sidecar.drill.app import SERVED_BY

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Request:
    """One request and how it ended, on the loop clock."""

    started: float
    ended: float
    status: int | None
    #: The transport error's type (or `unfinished`); None when an HTTP answer came.
    error: str | None
    served_by: str | None = None
    #: The server asked to close the connection after this answer (Envoy draining).
    closed: bool = False

    @property
    def kind(self) -> Literal["ok", "http_error", "transport_error"]:
        """How it ended."""
        if self.error is not None:
            return "transport_error"
        return "ok" if self.status is not None and self.status < 400 else "http_error"


@dataclass
class LoadRun:
    """What the generator sent and saw."""

    rate_asked: float
    started_at: float
    stopped_at: float = 0.0
    requests: list[Request] = field(default_factory=list)

    @property
    def rate_achieved(self) -> float:
        """Requests sent per second, over the time sending."""
        elapsed = self.stopped_at - self.started_at
        return len(self.requests) / elapsed if elapsed > 0 else 0.0

    def failures(self) -> Counter[str]:
        """Failed requests by HTTP status or transport error."""
        return Counter(r.error or f"HTTP {r.status}" for r in self.requests if r.kind != "ok")

    def latency_p99_seconds(self) -> float | None:
        """The 99th percentile of successful requests' latency."""
        latencies = sorted(r.ended - r.started for r in self.requests if r.kind == "ok")
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]

    def summary(self) -> dict[str, Any]:
        """The run in numbers, for the table and --json."""
        kinds = Counter(r.kind for r in self.requests)
        p99 = self.latency_p99_seconds()
        return {
            "requests": len(self.requests),
            "ok": kinds["ok"],
            "http_errors": kinds["http_error"],
            "transport_errors": kinds["transport_error"],
            "failures": dict(self.failures()),
            "rate_asked": self.rate_asked,
            "rate_achieved": round(self.rate_achieved, 1),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        }


async def generate(
    target: str | Callable[[], str],
    *,
    rate_per_second: float,
    stop: asyncio.Event,
    connections: int = 64,
    timeout_seconds: float = 10.0,
    burst_every_seconds: float = 0.0,
) -> LoadRun:
    """Send GET `target` at `rate_per_second` until `stop` is set; wait for the last ones.

    `target` is a URL, or what picks one for each request (a caller balancing by itself).
    With `burst_every_seconds`, each period's requests are sent at once at its start (the
    same mean rate, in bursts); otherwise they are spread evenly.
    """
    pick = target if callable(target) else lambda: target
    loop = asyncio.get_running_loop()
    run = LoadRun(rate_per_second, loop.time())
    pending: set[asyncio.Task[bool]] = set()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    if burst_every_seconds > 0:
        step, per_step = burst_every_seconds, max(1, round(rate_per_second * burst_every_seconds))
    else:
        step, per_step = 1 / rate_per_second, 1
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sent = 0
        while not stop.is_set():
            due = (math.floor((loop.time() - run.started_at) / step) + 1) * per_step
            for _ in range(due - sent):
                task = asyncio.create_task(_one(session, pick(), run.requests))
                pending.add(task)
                task.add_done_callback(pending.discard)
            sent = max(sent, due)
            next_at = run.started_at + sent / per_step * step
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
            except TimeoutError:
                continue
        run.stopped_at = loop.time()
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout_seconds + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    return run


async def pinned(
    resolve: Callable[[], str],
    *,
    interval_seconds: float,
    stop: asyncio.Event,
    timeout_seconds: float = 10.0,
    first_after_seconds: float = 0.0,
) -> LoadRun:
    """GET the URL `resolve` gives every `interval_seconds` on one connection, until `stop`.

    The first request goes after `first_after_seconds`, so that many clients spread out.
    """
    loop = asyncio.get_running_loop()
    run = LoadRun(1 / interval_seconds, loop.time())
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), first_after_seconds)
        url = resolve()
        while not stop.is_set():
            if await _one(session, url, run.requests):
                url = resolve()  # a new connection, wherever the address leads now
            try:
                await asyncio.wait_for(stop.wait(), interval_seconds)
            except TimeoutError:
                continue
    run.stopped_at = loop.time()
    return run


async def _one(session: aiohttp.ClientSession, url: str, out: list[Request]) -> bool:
    """Send one request and record it; True when its connection is done (closed or broken)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with session.get(url) as response:
            await response.read()
            closed = response.headers.get("Connection", "").lower() == "close"
            served_by = response.headers.get(SERVED_BY)
            out.append(Request(started, loop.time(), response.status, None, served_by, closed))
            return closed
    except asyncio.CancelledError:
        out.append(Request(started, loop.time(), None, "unfinished"))
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        out.append(Request(started, loop.time(), None, type(e).__name__))
        return True


def merged(runs: list[LoadRun]) -> LoadRun | None:
    """Several clients' runs as one (their requests together), or None without any."""
    if not runs:
        return None
    run = LoadRun(sum(r.rate_asked for r in runs), min(r.started_at for r in runs))
    run.stopped_at = max(r.stopped_at for r in runs)
    run.requests = sorted((q for r in runs for q in r.requests), key=lambda q: q.started)
    return run
