"""The API stand-in pins kubernetes-behaviour D (EndpointSlices) point by point, over HTTP."""

from __future__ import annotations

import asyncio

import aiohttp

from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from tests.drill.control_plane_client import SLICES, delete, endpoints, slices_of, watch


async def test_d1_d3_slices_carry_labels_owner_and_endpoints_as_the_controller_writes(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    service = cp.create("services", service_object("web", labels={"team": "a"}))
    pod = cp.create("pods", pod_object("web-1"))
    (only,) = await slices_of(http, "web")
    meta = only["metadata"]
    assert meta["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslice-controller.k8s.io"
    )
    assert meta["labels"]["team"] == "a"
    assert meta["generateName"] == "web-"
    assert meta["ownerReferences"][0]["uid"] == service["metadata"]["uid"]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in meta["annotations"]
    assert only["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    (ep,) = only["endpoints"]
    assert ep["targetRef"]["uid"] == pod["metadata"]["uid"]
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert ep["nodeName"] == "node-1"


async def test_d2_a_dual_stack_service_has_one_slice_per_family(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web", families=("IPv4", "IPv6")))
    cp.create("pods", pod_object("web-1", ("10.1.0.7", "fd00:0::7")))
    by_family = {
        s["addressType"]: s["endpoints"][0]["addresses"] for s in await slices_of(http, "web")
    }
    assert by_family == {"IPv4": ["10.1.0.7"], "IPv6": ["fd00::7"]}


async def test_d4_d6_a_deleted_pod_stays_listed_terminating_until_its_phase_is_terminal(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web"))
    cp.create("pods", pod_object("web-1"))
    cp.create("pods", pod_object("web-2", ("10.1.0.8",)))
    await delete(http, "web-1")
    (ep,) = endpoints(await slices_of(http, "web"), "web-1")
    assert ep["conditions"] == {"ready": False, "serving": True, "terminating": True}
    cp.set_ready(NAMESPACE, "web-1", ready=False)
    (ep,) = endpoints(await slices_of(http, "web"), "web-1")
    assert ep["conditions"]["serving"] is False
    cp.patch_pod_status(NAMESPACE, "web-1", {"phase": "Succeeded"})
    assert endpoints(await slices_of(http, "web"), "web-1") == []
    assert len(endpoints(await slices_of(http, "web"), "web-2")) == 1


async def test_d4_publish_not_ready_keeps_a_terminating_endpoint_ready(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web", publish_not_ready=True))
    cp.create("pods", pod_object("web-1", ready=False))
    await delete(http, "web-1")
    (ep,) = endpoints(await slices_of(http, "web"), "web-1")
    assert ep["conditions"] == {"ready": True, "serving": False, "terminating": True}


async def test_d5_not_ready_pods_are_listed_and_unscheduled_ones_are_not(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web"))
    cp.create("pods", pod_object("web-1", ready=False))
    cp.create("pods", pod_object("web-2", ("10.1.0.8",), node=""))
    slices = await slices_of(http, "web")
    assert endpoints(slices, "web-1")[0]["conditions"]["ready"] is False
    assert endpoints(slices, "web-2") == []


async def test_d7_a_service_without_endpoints_keeps_one_empty_placeholder(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web", selector={"app": "none"}))
    (placeholder,) = await slices_of(http, "web")
    assert placeholder["endpoints"] == []
    assert placeholder["ports"] == []


async def test_d8_slices_hold_at_most_max_endpoints(
    http: aiohttp.ClientSession, cp: ControlPlane
) -> None:
    cp.max_endpoints_per_slice = 3
    cp.create("services", service_object("web"))
    for i in range(7):
        cp.create("pods", pod_object(f"web-{i}", (f"10.1.0.{i + 10}",)))
    sizes = sorted(len(s["endpoints"]) for s in await slices_of(http, "web"))
    assert sum(sizes) == 7
    assert max(sizes) == 3


async def test_d9_a_moved_endpoint_briefly_sits_in_two_slices(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("services", service_object("web"))
    pod = cp.create("pods", pod_object("web-1"))
    listed = await http.get(SLICES)
    stream = await watch(
        http, SLICES, resourceVersion=(await listed.json())["metadata"]["resourceVersion"]
    )
    cp.move_endpoint(NAMESPACE, "web", pod["metadata"]["uid"])
    added = await stream.next()
    assert added is not None
    assert added["type"] == "ADDED"
    assert len(endpoints([added["object"]], "web-1")) == 1
    emptied = await stream.next()
    assert emptied is not None
    assert endpoints([emptied["object"]], "web-1") == []


async def test_d10_each_service_slice_changes_in_its_own_event_after_the_controller_delay(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    for name in ("a", "b", "c"):
        cp.create("services", service_object(name))
    cp.create("pods", pod_object("web-1"))
    cp.controller_delay_seconds = 0.3
    listed = await (await http.get(SLICES)).json()
    stream = await watch(http, SLICES, resourceVersion=listed["metadata"]["resourceVersion"])
    deleted_at = asyncio.get_running_loop().time()
    await delete(http, "web-1")
    seen = set()
    for _ in range(3):
        event = await stream.next()
        assert event is not None
        assert event["type"] == "MODIFIED"
        seen.add(event["object"]["metadata"]["labels"]["kubernetes.io/service-name"])
    assert seen == {"a", "b", "c"}
    assert asyncio.get_running_loop().time() - deleted_at >= 0.3
