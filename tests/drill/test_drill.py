"""The drill, small: every recipe runs for real; what it shows is what the product changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sidecar.drill.main import run_all
from sidecar.drill.params import DrillParams
from sidecar.model.injection import plan_patch

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
    # The coordinated pod is plan_patch's: its patch applied, the agent on the injected port.
    injected, launched = coordinated.injected, coordinated.agent_launch
    assert injected is not None
    assert launched is not None
    again = plan_patch(injected.plain, injected.template, namespace="shop", token=injected.token)
    assert injected.injection.patch == again.patch
    assert launched.settings["server"]["port"] == injected.template.port
    assert results["no-hook"].injected is None


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


#: Registry routing, small: callers read etcd every second, leases of 4 s.
REGISTRY = DrillParams(
    rate_per_second=50,
    lead_seconds=1.0,
    tail_seconds=0.5,
    routings=("registry",),
    registry_refresh_seconds=1.0,
    lease_ttl_seconds=4,
)


NEEDS_ETCD = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make servers)")


@NEEDS_ETCD
async def test_through_a_registry_without_a_hook_callers_fail_until_the_lease_expires(
    tmp_path: Path,
) -> None:
    (no_hook,) = await run_all(REGISTRY, ["no-hook"])
    assert no_hook.routing == "registry"
    # Nothing marks the pod down: callers send to it until its lease expires, and then fail.
    assert no_hook.marked_down_at is None
    assert sum(no_hook.load.failures().values()) > 0
    exited = no_hook.killed["app"].exited_at
    assert exited is not None
    assert no_hook.removed_at is not None
    assert no_hook.removed_at - exited >= REGISTRY.lease_ttl_seconds * 2 / 3 - 0.3
    assert no_hook.callers_left_at is not None
    assert no_hook.callers_left_at >= no_hook.removed_at
    failed = [r.started for r in no_hook.load.requests if r.kind != "ok"]
    assert max(failed) <= no_hook.callers_left_at + 0.1  # picked before that read, sent just after
    assert no_hook.key_present_at_end is False


@NEEDS_ETCD
async def test_through_a_registry_coordinated_marks_down_first_removes_last_and_loses_nothing(
    tmp_path: Path,
) -> None:
    (coordinated,) = await run_all(REGISTRY, ["coordinated"])
    assert coordinated.routing == "registry"
    assert coordinated.load.failures() == {}
    assert len(coordinated.load.requests) > 100
    app = coordinated.killed["app"]
    assert app.hook_ended is not None
    assert app.exited_at is not None
    # Marked down before the app's release; the callers moved at their next read, before it too.
    assert coordinated.marked_down_at is not None
    assert coordinated.callers_left_at is not None
    assert coordinated.marked_down_at <= coordinated.callers_left_at <= app.hook_ended
    # Removed only once the app had exited (it could no longer register again), and for good.
    assert coordinated.removed_at is not None
    assert coordinated.removed_at >= app.exited_at
    assert coordinated.key_present_at_end is False
    assert coordinated.agent_summary is not None
    phases = coordinated.agent_summary["phases"]
    assert phases["announce"]["registries"]["etcd"]["outcome"] == "marked_down"
    assert phases["retire"]["registries"]["etcd"]["outcome"] == "removed"
