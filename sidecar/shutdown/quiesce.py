"""Phase quiesce: wait until the data plane caught up, by the rules of sidecar/model/quiet.py."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sidecar.model.quiet import DRAIN_BEFORE_END_SECONDS, QuietDecision, decide, drain_reason
from sidecar.model.report import Outcome, Result

if TYPE_CHECKING:
    from sidecar.model.quiet import QuietBounds
    from sidecar.shutdown.observe import TrafficMonitor
    from sidecar.shutdown.protocols import ProxyAdmin


async def quiesce(
    monitor: TrafficMonitor,
    proxy: ProxyAdmin | None,
    *,
    deadline: float,
    bounds: QuietBounds,
) -> Result:
    """Wait, sample by sample, until `decide` says why; start the proxy's drain on the way.

    The drain moves clients pinned to the pod on keep-alive connections (kube-proxy never cuts
    them: only a `Connection: close` or GOAWAY does), but it also makes every pooled connection
    last one request, which hides callers leaving. So it starts when `drain_reason` says (a
    caller left), at the latest `proxy_drain_after_seconds` into the phase or just before its
    end, and in any case before the phase ends.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    detail: dict[str, object] = {}
    degraded = False
    decision = QuietDecision(None, bounds.max_window_seconds, "the first sample")
    reason: str | None = None
    # A later flight (a restart, a deletion after it) samples with the same monitor: until its
    # own drain starts, the pod closes no kept connection itself.
    monitor.kept_closes = True

    def judge(m: TrafficMonitor) -> bool:
        nonlocal decision
        decision = decide(m.lull, now=loop.time(), started_at=started, bounds=bounds)
        return decision.ended_by is not None

    def drain_due(m: TrafficMonitor) -> bool:
        nonlocal reason
        ended = judge(m)
        now = loop.time()
        reason = drain_reason(
            m.lull, elapsed=now - started, remaining=deadline - now, bounds=bounds
        )
        return ended or reason is not None

    if proxy is not None:
        latest = min(
            started + bounds.proxy_drain_after_seconds, deadline - DRAIN_BEFORE_END_SECONDS
        )
        if not await monitor.wait_until(drain_due, latest):
            remaining = deadline - loop.time()
            reason = drain_reason(
                monitor.lull,
                elapsed=loop.time() - started,
                remaining=min(remaining, DRAIN_BEFORE_END_SECONDS),
                bounds=bounds,
            )
        if reason is None:
            reason = f"quiesce ended ({decision.ended_by})"
        monitor.kept_closes = False  # from now on the pod closes kept connections itself
        degraded = await _drain(proxy, deadline, detail)
        detail["proxy_drain_reason"] = reason
        detail["proxy_drain_after_seconds"] = round(loop.time() - started, 3)

    went_quiet = decision.ended_by is not None or await monitor.wait_until(judge, deadline)
    now = loop.time()
    detail["ended_by"] = decision.ended_by if went_quiet else "cap"
    detail["ended_after_seconds"] = round(now - started, 3)
    detail["window_seconds"] = round(decision.window_seconds, 3)
    if not went_quiet:
        detail["waiting_on"] = decision.waiting_on
    last = monitor.lull.pod.last_arrival_at
    if last is not None:
        detail["last_activity_seconds_ago"] = round(now - last, 3)
    detail.update(monitor.snapshot())
    if not went_quiet:
        return Result(Outcome.TIMED_OUT, detail)
    return Result(Outcome.DEGRADED if degraded else Outcome.OK, detail)


async def _drain(proxy: ProxyAdmin, deadline: float, detail: dict[str, object]) -> bool:
    """Start the proxy's inbound drain; True when it failed (the phase is then degraded)."""
    try:
        async with asyncio.timeout_at(deadline):
            await proxy.drain_inbound()
    except TimeoutError:
        detail["proxy_drain"] = "failed: no answer by the deadline"
        return True
    except Exception as e:
        detail["proxy_drain"] = f"failed: {e}"
        return True
    detail["proxy_drain"] = "started"
    return False
