"""KubeApi's slice watch on the stand-in: Services, families, moves, drops, 410, never-unready."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, service_object
from sidecar.model.report import Outcome
from tests.adapters.kube_pod import CONTROLLER_DELAY_SECONDS, slow_deletion


async def test_a_pod_in_three_services_is_out_only_when_all_three_say_so(
    cp: ControlPlane, make_pod: Any
) -> None:
    for name in ("web", "admin", "metrics"):
        cp.create("services", service_object(name))
    cp.create("services", service_object("other", selector={"app": "other"}))
    pod = make_pod(inactivity_seconds=5.0)
    cp.controller_delay_seconds = 1.5  # longer than the client's first import and connection
    pod.delete()
    confirmed = await pod.confirm("deletion")
    assert confirmed.kind == "deletion"
    assert confirmed.deletion is not None
    assert confirmed.deletion.grace_seconds == 30
    result, _ = await pod.unroute()
    # Out only once the controller had acted on the deletion (D10 delay).
    took = asyncio.get_running_loop().time() - pod.deleted_at
    assert result.outcome is Outcome.OK
    assert result.detail["verdict"] == "out_of_rotation"
    assert result.detail["services"] == dict.fromkeys(
        ("admin", "metrics", "web"), "out_of_rotation"
    )
    assert took >= 1.5 * 0.9
    # One GET of the pod, one list, one watch for all its Services.
    assert cp.calls("GET", "/pods/web-1") == 1
    assert cp.calls("GET", "/endpointslices", watch=False) == 1
    assert cp.calls("GET", "/endpointslices", watch=True) == 1


async def test_two_address_families_are_both_followed(cp: ControlPlane, make_pod: Any) -> None:
    cp.create("services", service_object("web", families=("IPv4", "IPv6")))
    pod = make_pod(("10.1.0.7", "fd00::7"))
    pod.delete()
    result, _ = await pod.unroute()
    assert result.outcome is Outcome.OK
    slices = cp.store.items("endpointslices", NAMESPACE)
    assert {s["addressType"] for s in slices} == {"IPv4", "IPv6"}
    assert all(e["conditions"]["ready"] is False for s in slices for e in s["endpoints"])


async def test_an_endpoint_moving_between_slices_is_followed_to_its_new_slice(
    cp: ControlPlane, make_pod: Any
) -> None:
    pod, task = slow_deletion(cp, make_pod, controller_seconds=1.0)
    await cp.store.wait_for_watchers(1, 3.0)
    cp.move_endpoint(NAMESPACE, "web", pod.identity.uid)
    result, took = await task
    assert result.outcome is Outcome.OK
    assert took >= 0.9  # the moved copy stayed ready until the controller acted


async def test_a_watch_dropped_mid_shutdown_is_replaced_by_a_fresh_list_and_watch(
    cp: ControlPlane, make_pod: Any
) -> None:
    _, task = slow_deletion(cp, make_pod, controller_seconds=1.0)
    await cp.store.wait_for_watchers(1, 3.0)
    assert cp.drop_watches() == 1
    result, _ = await task
    assert result.outcome is Outcome.OK
    assert cp.calls("GET", "/endpointslices", watch=False) == 2


async def test_a_watch_ending_at_its_timeout_is_resumed_from_its_revision_without_a_list(
    cp: ControlPlane, make_pod: Any
) -> None:
    _, task = slow_deletion(cp, make_pod, controller_seconds=1.5, inactivity_seconds=0.4)
    result, _ = await task
    assert result.outcome is Outcome.OK
    assert cp.calls("GET", "/endpointslices", watch=True) >= 2
    assert cp.calls("GET", "/endpointslices", watch=False) == 1


async def test_an_expired_revision_on_resuming_a_watch_410_leads_to_a_relist(
    cp: ControlPlane, make_pod: Any
) -> None:
    _, task = slow_deletion(cp, make_pod, controller_seconds=1.5, inactivity_seconds=0.4)
    await cp.store.wait_for_watchers(1, 3.0)
    # History is lost while the watch runs: resuming from its last revision gets HTTP 200
    # and an ERROR 410 event (E5, E6).
    cp.faults = Faults(expire_next_watches=1)
    result, _ = await task
    assert result.outcome is Outcome.OK
    assert cp.expired_watches >= 1
    assert cp.calls("GET", "/endpointslices", watch=False) >= 2


async def test_publish_not_ready_addresses_is_reported_as_never_unready(
    cp: ControlPlane, make_pod: Any
) -> None:
    cp.create("services", service_object("web", publish_not_ready=True))
    pod = make_pod()
    pod.delete()
    result, took = await pod.unroute()
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["verdict"] == "never_unready"
    assert took < 2.0


async def test_a_pod_in_no_service_is_settled_at_once(cp: ControlPlane, make_pod: Any) -> None:
    cp.create("services", service_object("other", selector={"app": "other"}))
    pod = make_pod()
    pod.delete()
    result, took = await pod.unroute()
    assert result.outcome is Outcome.OK
    assert result.detail["verdict"] == "not_in_any_slice"
    assert took < CONTROLLER_DELAY_SECONDS
    assert cp.calls("GET", "/endpointslices", watch=True) == 0
