"""The API stand-in pins kubernetes-behaviour A (pod deletion) point by point, over HTTP."""

from __future__ import annotations

import time

import aiohttp
import pytest

from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.control_plane.store import parse_rfc3339
from sidecar.drill.objects import pod_object
from tests.drill.control_plane_client import PODS, delete, watch


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
