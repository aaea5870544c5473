"""The API stand-in pins kubernetes-behaviour A, D and E point by point, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.control_plane.store import parse_rfc3339
from sidecar.drill.objects import NAMESPACE, pod_object, service_object

PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"


@pytest.fixture
async def cp(request: pytest.FixtureRequest) -> AsyncIterator[ControlPlane]:
    settings = {"bookmark_interval_seconds": 0.2, **getattr(request, "param", {})}
    plane = ControlPlane(**settings)
    await plane.start()
    yield plane
    await plane.stop()


#: Watches opened by the running test; closed at its end.
OPEN: list[aiohttp.ClientResponse] = []


@pytest.fixture
async def http(cp: ControlPlane) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cp.url) as session:
        yield session
        while OPEN:
            OPEN.pop().close()


class Stream:
    """One watch, read event by event with a deadline."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, seconds: float = 3.0) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.response.content.readline(), seconds)
        return json.loads(line) if line else None

    async def until(self, predicate: Any, seconds: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(seconds):
            while True:
                event = await self.next(seconds)
                assert event is not None, "the watch ended first"
                if predicate(event):
                    return event


async def watch(http: aiohttp.ClientSession, path: str, **params: str) -> Stream:
    response = await http.get(path, params={"watch": "1", **params})
    OPEN.append(response)
    assert response.status == 200
    return Stream(response)


async def slices_of(http: aiohttp.ClientSession, service: str) -> list[dict[str, Any]]:
    async with http.get(
        SLICES, params={"labelSelector": f"kubernetes.io/service-name={service}"}
    ) as r:
        items: list[dict[str, Any]] = (await r.json())["items"]
        return items


def endpoints(slices: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for s in slices for e in s.get("endpoints") or [] if e["targetRef"]["name"] == name]


async def delete(http: aiohttp.ClientSession, name: str, **options: Any) -> aiohttp.ClientResponse:
    return await http.delete(f"{PODS}/{name}", json=options)


# -- A: pod deletion -------------------------------------------------------------------------


async def test_a1_a3_a4_graceful_delete_sets_the_deadline_and_answers_with_the_pod(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1", grace_seconds=20))
    stream = await watch(http, PODS, resourceVersion=created["metadata"]["resourceVersion"])
    before = time.time()
    response = await delete(http, "web-1")
    body = await response.json()
    assert response.status == 200
    assert body["kind"] == "Pod"
    meta = body["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 20
    assert before + 18 <= parse_rfc3339(meta["deletionTimestamp"]) <= time.time() + 20
    assert meta["generation"] == 2
    event = await stream.next()
    assert event is not None
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"]["deletionGracePeriodSeconds"] == 20


@pytest.mark.parametrize(
    ("options", "expected"), [({"gracePeriodSeconds": 5}, 5), ({"gracePeriodSeconds": -3}, 1)]
)
async def test_a1_a2_the_request_grace_wins_and_negative_is_one(
    cp: ControlPlane, http: aiohttp.ClientSession, options: dict[str, int], expected: int
) -> None:
    cp.create("pods", pod_object("web-1"))
    body = await (await delete(http, "web-1", **options)).json()
    assert body["metadata"]["deletionGracePeriodSeconds"] == expected


async def test_a1_an_unscheduled_pod_is_removed_at_once(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1", node=""))
    await delete(http, "web-1")
    assert (await http.get(f"{PODS}/web-1")).status == 404


async def test_a5_a_second_delete_may_only_shorten_the_grace(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1"))
    first = (await (await delete(http, "web-1")).json())["metadata"]
    longer = (await (await delete(http, "web-1", gracePeriodSeconds=60)).json())["metadata"]
    assert longer["deletionTimestamp"] == first["deletionTimestamp"]
    shorter = (await (await delete(http, "web-1", gracePeriodSeconds=10)).json())["metadata"]
    assert shorter["deletionGracePeriodSeconds"] == 10
    moved = parse_rfc3339(first["deletionTimestamp"]) - parse_rfc3339(shorter["deletionTimestamp"])
    assert moved == 20


async def test_a6_a10_a12_final_delete_with_uid_precondition_gives_deleted_with_last_state(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1"))
    await delete(http, "web-1")
    stream = await watch(http, PODS, fieldSelector="metadata.name=web-1")
    assert (await stream.next() or {})["type"] == "ADDED"
    uid = created["metadata"]["uid"]
    response = await delete(http, "web-1", gracePeriodSeconds=0, preconditions={"uid": uid})
    assert response.status == 200
    deleted = await stream.until(lambda e: e["type"] == "DELETED")
    assert deleted["object"]["metadata"]["deletionTimestamp"]
    assert deleted["object"]["metadata"]["resourceVersion"] == str(cp.store.revision)


async def test_a8_wrong_uid_is_409_and_a_missing_pod_404(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1"))
    conflict = await delete(http, "web-1", preconditions={"uid": "not-this-one"})
    assert conflict.status == 409
    assert (await conflict.json())["reason"] == "Conflict"
    missing = await delete(http, "nobody")
    assert missing.status == 404
    assert (await missing.json())["message"] == 'pods "nobody" not found'


# -- D: EndpointSlices -----------------------------------------------------------------------


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


# -- E: list and watch -----------------------------------------------------------------------


async def test_e1_e4_a_list_pages_with_continue_and_carries_its_revision(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    for i in range(3):
        cp.create("pods", pod_object(f"web-{i}"))
    first = await (await http.get(PODS, params={"limit": "2"})).json()
    assert first["kind"] == "PodList"
    assert len(first["items"]) == 2
    assert first["metadata"]["remainingItemCount"] == 1
    rest = await (await http.get(PODS, params={"continue": first["metadata"]["continue"]})).json()
    assert [p["metadata"]["name"] for p in rest["items"]] == ["web-2"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_e4_expired_continue_token_is_410(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    for i in range(2):
        cp.create("pods", pod_object(f"web-{i}"))
    first = await (await http.get(PODS, params={"limit": "1"})).json()
    cp.continue_ttl_seconds = 0
    response = await http.get(PODS, params={"continue": first["metadata"]["continue"]})
    assert response.status == 410
    assert (await response.json())["reason"] == "Expired"


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"resourceVersionMatch": "NotOlderThan"}, 422, "resourceVersionMatch: Forbidden"),
        ({"sendInitialEvents": "true"}, 422, "sendInitialEvents: Forbidden"),
        ({"limit": "many"}, 400, "limit: expected a number, got 'many'"),
        ({"labelSelector": "app in (web"}, 400, "unable to parse requirement: 'app in (web'"),
    ],
)
async def test_e4_e10_invalid_list_options_are_refused_naming_the_option(
    http: aiohttp.ClientSession, params: dict[str, str], code: int, message: str
) -> None:
    response = await http.get(PODS, params=params)
    assert response.status == code
    body = await response.json()
    assert body["kind"] == "Status"
    assert body["message"].startswith(message)


async def test_e2_e3_a_watch_without_revision_starts_with_added_and_one_from_a_revision_does_not(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1"))
    fresh = await watch(http, PODS)
    assert fresh.response.headers["Content-Type"].startswith("application/json")
    assert fresh.response.headers.get("Transfer-Encoding") == "chunked"
    assert (await fresh.next() or {})["type"] == "ADDED"
    resumed = await watch(http, PODS, resourceVersion=created["metadata"]["resourceVersion"])
    cp.set_ready(NAMESPACE, "web-1", ready=False)
    assert (await resumed.next() or {})["type"] == "MODIFIED"


async def test_e5_e6_an_expired_revision_is_200_then_one_error_410_then_the_end(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1"))
    cp.set_ready(NAMESPACE, "web-1", ready=False)
    cp.expire_all()
    stream = await watch(http, PODS, resourceVersion=created["metadata"]["resourceVersion"])
    error = await stream.next()
    assert error is not None
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == 410
    assert error["object"]["reason"] == "Expired"
    assert await stream.next() is None


async def test_e7_e8_bookmarks_come_when_asked_and_the_watch_ends_cleanly_at_its_timeout(
    http: aiohttp.ClientSession,
) -> None:
    stream = await watch(http, PODS, allowWatchBookmarks="true", timeoutSeconds="1")
    mark = await stream.next()
    assert mark is not None
    assert mark["type"] == "BOOKMARK"
    assert set(mark["object"]["metadata"]) == {"resourceVersion"}
    async with asyncio.timeout(3):
        while (event := await stream.next()) is not None:
            assert event["type"] == "BOOKMARK"


async def test_e9_an_object_that_stops_matching_the_selector_is_deleted_for_that_watcher(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1"))
    stream = await watch(http, PODS, labelSelector="app=web")
    assert (await stream.next() or {})["type"] == "ADDED"
    await http.patch(
        f"{PODS}/web-1",
        json={"metadata": {"labels": {"app": "old"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    gone = await stream.next()
    assert gone is not None
    assert gone["type"] == "DELETED"
    assert gone["object"]["metadata"]["labels"] == {"app": "web"}


async def test_e10_watch_list_sends_initial_events_then_a_marked_bookmark(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "watch": "1",
    }
    assert (await http.get(PODS, params=params)).status == 422
    cp.watch_list = True
    stream = await watch(http, PODS, **params)
    assert (await stream.next() or {})["type"] == "ADDED"
    mark = await stream.next()
    assert mark is not None
    assert mark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_e11_slices_select_only_on_name_and_namespace(http: aiohttp.ClientSession) -> None:
    response = await http.get(SLICES, params={"fieldSelector": "addressType=IPv4"})
    assert response.status == 400
    assert (await response.json())["message"] == (
        '"addressType" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


# -- faults ----------------------------------------------------------------------------------


async def test_an_injected_status_answers_only_the_chosen_calls(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    cp.create("pods", pod_object("web-1"))
    cp.faults = Faults(status=403, path_contains="endpointslices", times=1)
    assert (await http.get(SLICES)).status == 403
    assert (await http.get(SLICES)).status == 200
    assert (await http.get(f"{PODS}/web-1")).status == 200


async def test_dropping_watches_cuts_the_connection(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    stream = await watch(http, PODS, timeoutSeconds="30")
    assert cp.drop_watches() == 1
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        await stream.next()


@pytest.mark.parametrize("cp", [{"history_limit": 2}], indirect=True)
async def test_e6_a_revision_that_left_the_bounded_history_is_expired(
    http: aiohttp.ClientSession, cp: ControlPlane
) -> None:
    first = cp.create("pods", pod_object("web-1"))
    for ready in (False, True, False):
        cp.set_ready(NAMESPACE, "web-1", ready=ready)
    stream = await watch(http, PODS, resourceVersion=first["metadata"]["resourceVersion"])
    error = await stream.next()
    assert error is not None
    assert (error["type"], error["object"]["code"]) == ("ERROR", 410)
    recent = await watch(http, PODS, resourceVersion=str(cp.store.revision - 1))
    cp.set_ready(NAMESPACE, "web-1", ready=True)
    assert (await recent.next() or {})["type"] == "MODIFIED"
