"""Phase drain: in-flight requests on inbound ports finish; idle keep-alive ones do not count."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.model.report import Outcome, Result

if TYPE_CHECKING:
    from sidecar.shutdown.observe import TrafficMonitor


async def drain(
    monitor: TrafficMonitor, *, deadline: float, ports: frozenset[int] | None = None
) -> Result:
    """Wait until no connection on `ports` (default: every inbound port) is in flight."""

    def in_flight(m: TrafficMonitor) -> int:
        if m.view is None:
            return -1
        if ports is None:
            return m.view.in_flight
        return sum(n for port, n in m.view.in_flight_by_port.items() if port in ports)

    drained = await monitor.wait_until(lambda m: in_flight(m) == 0, deadline)
    detail: dict[str, object] = monitor.snapshot()
    if monitor.view is not None:
        detail["in_flight_by_port"] = {
            str(k): v for k, v in sorted(monitor.view.in_flight_by_port.items())
        }
    if not drained:
        return Result(Outcome.TIMED_OUT, detail)
    if monitor.latest is not None and not monitor.latest.has_timing:
        detail["note"] = "no per-socket timing: every open connection was counted as in flight"
        return Result(Outcome.DEGRADED, detail)
    return Result(Outcome.OK, detail)
