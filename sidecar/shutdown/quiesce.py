"""Phase quiesce: wait until the data plane caught up, by the rules of sidecar/model/quiet.py."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sidecar.model.quiet import QuietDecision, decide
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
    """Start the proxy's inbound drain, then wait, sample by sample, until `decide` says why.

    The drain comes first because clients pinned to the pod on keep-alive connections keep
    sending after the endpoint is gone (kube-proxy never cuts them): only a `Connection: close`
    or GOAWAY moves them elsewhere, and until then the pod cannot go quiet.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    detail: dict[str, object] = {}
    degraded = False
    if proxy is not None:
        try:
            async with asyncio.timeout_at(deadline):
                await proxy.drain_inbound()
            detail["proxy_drain"] = "started"
        except TimeoutError:
            detail["proxy_drain"] = "failed: no answer by the deadline"
            degraded = True
        except Exception as e:
            detail["proxy_drain"] = f"failed: {e}"
            degraded = True
    decision = QuietDecision(None, bounds.max_window_seconds, "the first sample")

    def ended(m: TrafficMonitor) -> bool:
        nonlocal decision
        decision = decide(m.lull, now=loop.time(), started_at=started, bounds=bounds)
        return decision.ended_by is not None

    went_quiet = await monitor.wait_until(ended, deadline)
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
