"""The API stand-in pins kubernetes-behaviour E (list and watch) and its faults, over HTTP."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, pod_object
from tests.drill.control_plane_client import PODS, SLICES, watch


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


async def test_injected_garbage_is_one_line_per_watch_before_its_events(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1"))
    cp.faults = Faults(watch_garbage=[b"not json", b"[1, 2]"])
    rv = created["metadata"]["resourceVersion"]
    first = await watch(http, PODS, resourceVersion=rv)
    assert await asyncio.wait_for(first.response.content.readline(), 3) == b"not json\n"
    second = await watch(http, PODS, resourceVersion=rv)
    assert await asyncio.wait_for(second.response.content.readline(), 3) == b"[1, 2]\n"
    cp.set_ready(NAMESPACE, "web-1", ready=False)
    assert (await second.next() or {})["type"] == "MODIFIED"  # events follow as usual
    third = await watch(http, PODS, resourceVersion=str(cp.store.revision))
    cp.set_ready(NAMESPACE, "web-1", ready=True)
    assert (await third.next() or {})["type"] == "MODIFIED"
    assert cp.faults.watch_garbage == []


async def test_a_truncated_watch_sends_half_of_its_first_event_then_ends_cleanly(
    cp: ControlPlane, http: aiohttp.ClientSession
) -> None:
    created = cp.create("pods", pod_object("web-1"))
    cp.faults = Faults(truncate_next_watches=1)
    stream = await watch(http, PODS, resourceVersion=created["metadata"]["resourceVersion"])
    cp.set_ready(NAMESPACE, "web-1", ready=False)
    body = await asyncio.wait_for(stream.response.content.read(), 3)  # to the clean end
    assert body.startswith(b'{"type": "MODIFIED"')
    assert not body.endswith(b"\n")
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(body)
    assert cp.faults.truncate_next_watches == 0
