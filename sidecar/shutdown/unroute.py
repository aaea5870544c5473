"""Phase unroute: wait until the control plane has taken the pod out of rotation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sidecar.model.report import Outcome
from sidecar.shutdown.protocols import Result

if TYPE_CHECKING:
    from sidecar.shutdown.protocols import RotationWatch


async def unroute(
    rotation: RotationWatch | None, *, deadline: float, fallback_delay_seconds: float
) -> Result:
    """Observe the EndpointSlices; without an API adapter, wait a bounded fixed delay instead."""
    if rotation is not None:
        return await rotation.wait_out_of_rotation(deadline)
    loop = asyncio.get_running_loop()
    started = loop.time()
    until = min(started + fallback_delay_seconds, deadline)
    await asyncio.sleep(max(0.0, until - started))
    return Result(
        Outcome.DEGRADED,
        {
            "reason": "no API adapter: waited a fixed delay",
            "waited_seconds": round(until - started, 3),
        },
    )
