"""Kubernetes Events for the shutdown's milestones and warnings, posted without ever waiting."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.model.report import Outcome, Phase, registry_entries

if TYPE_CHECKING:
    from sidecar.model.report import PhaseRecord, Release
    from sidecar.settings import Settings
    from sidecar.shutdown.protocols import EventSink, ShutdownListener

log = structlog.get_logger(__name__)

#: How much longer than the API's own request timeout a post may take before it is dropped.
_GUARD_SECONDS = 0.5

_WARNING_REASONS = {
    Outcome.TIMED_OUT: "ShutdownPhaseTimedOut",
    Outcome.DEGRADED: "ShutdownPhaseDegraded",
    Outcome.ERROR: "ShutdownPhaseFailed",
}


#: Registry outcomes that need nobody's attention (docs/registries.md).
_GOOD_REGISTRY_OUTCOMES = frozenset({"marked_down", "removed", "already_absent", "forced", "ok"})


class EventPoster:
    """Turns milestones into Events; each post runs on its own, bounded by a timeout."""

    def __init__(self, sink: EventSink, settings: Settings) -> None:
        self._sink = sink
        self._roles = {c.name: c.role for c in settings.containers}
        # The adapter cuts each call at the request timeout and names the call; this guard is
        # for a sink that never gives up, so it comes a little later and names itself.
        self._timeout = settings.kubernetes.request_timeout_seconds + _GUARD_SECONDS
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0

    def phase_finished(self, record: PhaseRecord) -> None:
        """Out of rotation is a milestone; any phase that did not end well is a warning."""
        detail = ", ".join(f"{k}={v}" for k, v in record.detail.items() if k != "services")
        if record.outcome in _WARNING_REASONS:
            reason = _WARNING_REASONS[record.outcome]
            self._post(reason, f"{record.label}: {record.outcome} ({detail})", warning=True)
        elif record.phase == Phase.UNROUTE and record.outcome is Outcome.OK:
            self._post("OutOfRotation", f"out of rotation after {record.duration:.1f} s ({detail})")
        for name, entry in registry_entries(record):
            outcome = entry.get("outcome")
            reason = "RegistryMarkedDown" if record.phase == Phase.ANNOUNCE else "RegistryRetired"
            attempts = entry.get("attempts")
            message = f"{name}: {outcome} ({attempts} attempt{'s' * (attempts != 1)})"
            self._post(reason, message, warning=outcome not in _GOOD_REGISTRY_OUTCOMES)

    def container_released(self, release: Release) -> None:
        """Each container's hook answered: the kubelet sends it SIGTERM now."""
        reason = "ProxyReleased" if self._roles.get(release.container) == "proxy" else "AppReleased"
        self._post(reason, f"container {release.container} released ({release.reason})")

    def shutdown_finished(self, summary: dict[str, Any]) -> None:
        """The canonical summary, in one line."""
        outcome = summary.get("outcome")
        message = (
            f"shutdown {outcome} in {summary.get('duration_seconds')} s, "
            f"{summary.get('budget_left_seconds')} s of the budget left"
        )
        self._post("ShutdownFinished", message, warning=outcome != "ok")

    def _post(self, reason: str, message: str, *, warning: bool = False) -> None:
        task = asyncio.create_task(self._send(reason, message[:1024], warning), name="event")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, reason: str, message: str, warning: bool) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._sink.post_event(reason, message, warning=warning)
        except Exception as e:  # an Event is a courtesy: it never stops anything
            self.failures += 1
            if self.failures == 1:
                error = f"no answer within {self._timeout} s" if type(e) is TimeoutError else str(e)
                log.warning("event_not_posted", reason=reason, error=error)

    async def flush(self, timeout_seconds: float) -> None:
        """Wait a bounded time for posts still in flight (before the process exits)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_seconds):
                    await asyncio.gather(*self._tasks, return_exceptions=True)


class FanOut:
    """Tells several listeners about each milestone, in order."""

    def __init__(self, *listeners: ShutdownListener) -> None:
        self._listeners = listeners

    def phase_finished(self, record: PhaseRecord) -> None:
        """A phase ended."""
        for listener in self._listeners:
            listener.phase_finished(record)

    def container_released(self, release: Release) -> None:
        """A container's hook was answered."""
        for listener in self._listeners:
            listener.container_released(release)

    def shutdown_finished(self, summary: dict[str, Any]) -> None:
        """The whole shutdown ended."""
        for listener in self._listeners:
            listener.shutdown_finished(summary)
