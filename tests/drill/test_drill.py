"""The drill, small: every recipe runs for real; what it shows is what the product changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.drill.main import run_all
from sidecar.drill.params import DrillParams

pytestmark = pytest.mark.envoy

SMALL = DrillParams(rate_per_second=50, lead_seconds=1.0, tail_seconds=0.5, grace_seconds=30)


async def test_coordinated_loses_nothing_no_hook_loses_requests_and_sleep_15_is_slower(
    tmp_path: Path,
) -> None:
    results = {r.recipe: r for r in await run_all(SMALL, ["no-hook", "sleep-15", "coordinated"])}
    coordinated, no_hook, sleep = (results[k] for k in ("coordinated", "no-hook", "sleep-15"))
    assert coordinated.load.failures() == {}
    assert len(coordinated.load.requests) > 100
    # The drill can see failures: without a hook the pod dies while still in rotation.
    assert sum(no_hook.load.failures().values()) > 0
    assert sleep.load.failures() == {}
    app_sigterm = {
        name: r.killed["app"].sigterm_at - r.t0  # type: ignore[operator]
        for name, r in results.items()
    }
    assert app_sigterm["coordinated"] < app_sigterm["sleep-15"]
    # Released once the data plane moved and the last requests ended, not before.
    assert coordinated.moved_at is not None
    assert coordinated.killed["app"].sigterm_at is not None
    assert coordinated.killed["app"].sigterm_at >= coordinated.moved_at
    assert coordinated.agent_summary is not None
    assert coordinated.agent_summary["phases"]["unroute"]["outcome"] == "ok"


async def test_coordinated_with_native_sidecars_loses_nothing_and_the_proxy_stops_after_the_app(
    tmp_path: Path,
) -> None:
    native = DrillParams(rate_per_second=50, lead_seconds=1.0, tail_seconds=0.5, native=True)
    (result,) = await run_all(native, ["coordinated"])
    assert result.load.failures() == {}
    app, proxy, agent = (result.killed[n] for n in ("app", "proxy", "agent"))
    assert app.exited_at is not None
    assert proxy.sigterm_at is not None
    assert agent.sigterm_at is not None
    # C3: sidecars get SIGTERM after the main container exited, in reverse declaration order.
    assert app.exited_at <= proxy.sigterm_at
    assert proxy.exited_at is not None
    assert proxy.exited_at <= agent.sigterm_at
