"""Pins phase unroute: it watches the slices holding the pod until it is out of rotation,
falls back to a bounded fixed delay without the API, and ends by the deadline.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.errors import ApiError
from sidecar.model.report import Outcome
from sidecar.model.rotation import pod_key
from sidecar.shutdown.unroute import unroute
from tests.shutdown.doubles import (
    POD_IP,
    POD_UID,
    ScriptedSlices,
    StuckApi,
    endpoint,
    slice_of,
)

pytestmark = pytest.mark.looptime

KEY = pod_key(POD_UID, [POD_IP])
OTHER = endpoint(uid="other-pod", ip="10.1.2.4")
IN_ROTATION = [slice_of("web", endpoint(), OTHER)]
OUT_OF_ROTATION = [slice_of("web", endpoint(ready=False, terminating=True), OTHER)]


async def test_the_pod_going_unready_in_the_watch_ends_the_phase_at_once() -> None:
    api = ScriptedSlices(IN_ROTATION, revision="41", changes=[(1.5, OUT_OF_ROTATION)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 1.5)
    assert result.outcome is Outcome.OK
    assert result.detail == {
        "verdict": "out_of_rotation",
        "services": {"web": "out_of_rotation"},
    }
    assert api.watched == [(frozenset({"web"}), "41")]


async def test_the_endpoint_removed_from_its_slice_counts_as_out_of_rotation() -> None:
    api = ScriptedSlices(IN_ROTATION, changes=[(0.5, [slice_of("web", OTHER)])])
    loop = asyncio.get_running_loop()
    result = await unroute(api, KEY, deadline=loop.time() + 10, fallback_delay_seconds=2)
    assert result.outcome is Outcome.OK
    assert result.detail["services"] == {"web": "out_of_rotation"}


async def test_a_pod_already_out_of_rotation_in_the_first_list_is_not_watched() -> None:
    api = ScriptedSlices(OUT_OF_ROTATION)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == started
    assert result.outcome is Outcome.OK
    assert result.detail["verdict"] == "out_of_rotation"
    assert api.watched == []


async def test_a_pod_in_no_slice_is_settled_at_once_as_not_listed() -> None:
    api = ScriptedSlices([slice_of("web", OTHER)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == started
    assert result.outcome is Outcome.OK
    assert result.detail == {"verdict": "not_in_any_slice", "services": {}}


async def test_only_the_services_that_held_the_pod_are_watched_and_reported() -> None:
    first = [*IN_ROTATION, slice_of("admin", endpoint()), slice_of("unrelated", OTHER)]
    after = [*OUT_OF_ROTATION, slice_of("admin", endpoint(ready=False))]
    api = ScriptedSlices(first, changes=[(1, after)])
    loop = asyncio.get_running_loop()
    result = await unroute(api, KEY, deadline=loop.time() + 10, fallback_delay_seconds=2)
    assert api.watched == [(frozenset({"web", "admin"}), "41")]
    assert result.detail["services"] == {
        "admin": "out_of_rotation",
        "web": "out_of_rotation",
    }


async def test_slices_that_never_say_ready_false_time_out_at_the_deadline() -> None:
    api = ScriptedSlices(IN_ROTATION, changes=[(1, IN_ROTATION), (2, IN_ROTATION)])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    result = await unroute(api, KEY, deadline=deadline, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"verdict": "in_rotation", "services": {"web": "in_rotation"}}


async def test_publish_not_ready_addresses_is_reported_degraded_as_never_unready() -> None:
    # ready:true while terminating: the API will never take the pod out; quiesce must see it.
    never_unready = [slice_of("web", endpoint(ready=True, terminating=True), OTHER)]
    api = ScriptedSlices(IN_ROTATION, changes=[(0.75, never_unready)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 0.75)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {"verdict": "never_unready", "services": {"web": "never_unready"}}


async def test_no_api_waits_the_fixed_delay_and_reports_it_degraded() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(None, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 2)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {
        "reason": "API not available: waited a fixed delay",
        "waited_seconds": 2.0,
    }


async def test_the_fixed_delay_is_cut_by_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(None, KEY, deadline=started + 3, fallback_delay_seconds=20)
    assert loop.time() == pytest.approx(started + 3)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["waited_seconds"] == 3.0


async def test_an_api_error_on_the_first_list_falls_back_and_names_the_error() -> None:
    error = ApiError("list endpointslices", 403, "HTTP 403: forbidden")
    api = ScriptedSlices(IN_ROTATION, list_error=error)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 2)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["reason"] == (
        "list endpointslices: HTTP 403: forbidden: waited a fixed delay"
    )
    assert api.watched == []


async def test_a_pod_with_neither_uid_nor_ip_falls_back_and_says_why() -> None:
    api = ScriptedSlices(IN_ROTATION)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, pod_key("", []), deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 2)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["reason"].startswith("cannot recognise our endpoints")


async def test_a_watch_failing_mid_way_waits_the_rest_of_the_delay_and_names_the_error() -> None:
    error = ApiError("watch endpointslices", 403, "HTTP 403: forbidden")
    api = ScriptedSlices(IN_ROTATION, changes=[(0.5, IN_ROTATION), (1.0, error)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    # The fixed delay counts from the phase's start, not from the failure.
    assert loop.time() == pytest.approx(started + 2)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {
        "reason": "watch endpointslices: HTTP 403: forbidden: waited a fixed delay",
        "waited_seconds": 2.0,
        "verdict": "in_rotation",
        "services": {"web": "in_rotation"},
    }


async def test_a_watch_failing_after_the_fixed_delay_returns_at_once() -> None:
    error = ApiError("watch endpointslices", 401, "HTTP 401: unauthorized")
    api = ScriptedSlices(IN_ROTATION, changes=[(3.0, error)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await unroute(api, KEY, deadline=started + 10, fallback_delay_seconds=2)
    assert loop.time() == pytest.approx(started + 3)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["waited_seconds"] == 3.0


async def test_a_watch_failing_mid_way_reports_the_last_verdict_it_saw() -> None:
    first = [*IN_ROTATION, slice_of("admin", endpoint())]
    web_out = [*OUT_OF_ROTATION, slice_of("admin", endpoint())]
    error = ApiError("watch endpointslices", 403, "HTTP 403: forbidden")
    api = ScriptedSlices(first, changes=[(0.5, web_out), (1.0, error)])
    loop = asyncio.get_running_loop()
    result = await unroute(api, KEY, deadline=loop.time() + 10, fallback_delay_seconds=2)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["services"] == {"admin": "in_rotation", "web": "out_of_rotation"}


async def test_a_list_that_never_answers_ends_the_phase_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    # A phase that ignored its deadline would hang here until wait_for's own limit failed the test.
    result = await asyncio.wait_for(
        unroute(StuckApi(), KEY, deadline=deadline, fallback_delay_seconds=2), 5
    )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"reason": "the EndpointSlice list did not answer by the deadline"}
