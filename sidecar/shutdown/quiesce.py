"""Phase quiesce: wait until the data plane caught up (no inbound activity for a quiet window)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sidecar.model.report import Outcome, Result
from sidecar.model.traffic import quiet

if TYPE_CHECKING:
    from sidecar.shutdown.observe import TrafficMonitor
    from sidecar.shutdown.protocols import ProxyAdmin


async def quiesce(
    monitor: TrafficMonitor,
    proxy: ProxyAdmin | None,
    *,
    deadline: float,
    window_seconds: float,
    min_seconds: float,
) -> Result:
    """Start the proxy's inbound drain, then wait for a quiet window.

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
    went_quiet = await monitor.wait_until(
        lambda m: quiet(
            m.track,
            now=loop.time(),
            since=started,
            window_seconds=window_seconds,
            min_seconds=min_seconds,
        ),
        deadline,
    )
    last = monitor.track.last_activity_at
    if last is not None:
        detail["last_activity_seconds_ago"] = round(loop.time() - last, 3)
    detail.update(monitor.snapshot())
    if not went_quiet:
        return Result(Outcome.TIMED_OUT, detail)
    return Result(Outcome.DEGRADED if degraded else Outcome.OK, detail)
