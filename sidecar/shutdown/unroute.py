"""Phase unroute: wait until the control plane has taken the pod out of rotation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.errors import ApiError
from sidecar.model.report import Outcome, Result
from sidecar.model.rotation import Rotation, Verdict, services_holding, verdict

if TYPE_CHECKING:
    from sidecar.model.rotation import PodKey, Slice
    from sidecar.shutdown.protocols import SliceSource

log = structlog.get_logger(__name__)


async def unroute(
    slices: SliceSource | None,
    key: PodKey,
    *,
    deadline: float,
    fallback_delay_seconds: float,
) -> Result:
    """Watch the slices holding the pod until it is out of rotation.

    Without the API (none configured, unreachable, forbidden) wait a bounded fixed delay
    instead, and say so in the outcome.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    if slices is None:
        return await _fallback(started, deadline, fallback_delay_seconds, "API not available")
    if not key.uid and not key.ips:
        reason = "cannot recognise our endpoints: no pod uid or IP known"
        return await _fallback(started, deadline, fallback_delay_seconds, reason)
    return await _watch(slices, key, started, deadline, fallback_delay_seconds)


async def _watch(
    slices: SliceSource, key: PodKey, started: float, deadline: float, fallback_seconds: float
) -> Result:
    """List the slices, then follow the watch until the verdict settles or time runs out."""
    try:
        async with asyncio.timeout_at(deadline):
            first, revision = await slices.list_slices()
    except TimeoutError:
        reason = "the EndpointSlice list did not answer by the deadline"
        return Result(Outcome.TIMED_OUT, {"reason": reason})
    except ApiError as e:
        return await _fallback(started, deadline, fallback_seconds, str(e))
    services = services_holding(key, first)
    seen = [verdict(key, services, first)]
    if seen[-1].settled:
        return _settled(seen[-1])
    watched = [s for s in first if s.service in services]
    try:
        return await _until_settled(slices, key, services, (watched, revision), deadline, seen)
    except ApiError as e:
        return await _fallback(started, deadline, fallback_seconds, str(e), seen[-1])


async def _until_settled(
    slices: SliceSource,
    key: PodKey,
    services: frozenset[str],
    first: tuple[list[Slice], str],
    deadline: float,
    seen: list[Verdict],
) -> Result:
    """Follow the watch until the verdict settles, or time out with the last verdict.

    Each verdict is appended to `seen`, so that a watch failing mid-way reports the last one.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            async for snapshot in slices.slice_snapshots(services, *first, deadline):
                seen.append(verdict(key, services, snapshot))
                if seen[-1].settled:
                    return _settled(seen[-1])
    return Result(Outcome.TIMED_OUT, _detail(seen[-1]))


def _settled(result: Verdict) -> Result:
    # publishNotReadyAddresses: the API will never say "out"; quiesce has to see traffic stop.
    outcome = Outcome.DEGRADED if result.state is Rotation.NEVER_UNREADY else Outcome.OK
    return Result(outcome, _detail(result))


def _detail(result: Verdict) -> dict[str, Any]:
    return {
        "verdict": str(result.state),
        "services": {s.service: str(s.state) for s in result.services},
    }


async def _fallback(
    started: float,
    deadline: float,
    delay_seconds: float,
    reason: str,
    last: Verdict | None = None,
) -> Result:
    """Wait what is left of the fixed delay (bounded by the deadline), reported as degraded."""
    loop = asyncio.get_running_loop()
    until = min(started + delay_seconds, deadline)
    await asyncio.sleep(max(0.0, until - loop.time()))
    log.warning("unroute_degraded", reason=reason)
    detail: dict[str, Any] = {
        "reason": f"{reason}: waited a fixed delay",
        "waited_seconds": round(loop.time() - started, 3),
    }
    if last is not None:
        detail.update(_detail(last))
    return Result(Outcome.DEGRADED, detail)
