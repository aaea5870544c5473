"""KubeApi confirm against the stand-in: forbidden, down, slow, restart, force-deleted; Events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, service_object
from sidecar.model.report import Outcome
from tests.adapters.kube_pod import FALLBACK_SECONDS


async def test_forbidden_degrades_to_the_fixed_delay_and_says_why(
    cp: ControlPlane, make_pod: Any
) -> None:
    cp.create("services", service_object("web"))
    pod = make_pod()
    pod.delete()
    cp.faults = Faults(status=403)
    confirmed = await pod.confirm("deletion")
    assert confirmed.kind == "deletion"
    assert confirmed.api_failed
    assert confirmed.result.outcome is Outcome.DEGRADED
    assert confirmed.result.detail["api_error"].startswith("get pod: HTTP 403: ")
    assert confirmed.result.detail["treated_as"] == "deletion"
    result, took = await pod.unroute()
    assert result.outcome is Outcome.DEGRADED
    reason = result.detail["reason"]
    assert reason.startswith("list endpointslices: HTTP 403: "), reason
    assert reason.endswith(": waited a fixed delay"), reason
    assert took == pytest.approx(FALLBACK_SECONDS, abs=0.3)


async def test_forbidden_can_be_treated_as_a_restart_by_policy(
    cp: ControlPlane, make_pod: Any
) -> None:
    pod = make_pod()
    cp.faults = Faults(status=403)
    confirmed = await pod.confirm("restart")
    assert confirmed.kind == "restart"
    assert confirmed.result.detail["treated_as"] == "restart"
    assert confirmed.result.detail["api_error"].startswith("get pod: HTTP 403: ")


async def test_an_api_that_is_down_degrades_within_the_request_timeout(
    cp: ControlPlane, make_pod: Any
) -> None:
    pod = make_pod()
    await cp.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    confirmed = await pod.confirm("deletion")
    assert confirmed.api_failed
    error = confirmed.result.detail["api_error"]
    assert error.startswith("get pod: ClientConnectorError: Cannot connect to host"), error
    assert loop.time() - started < 1.0
    result, took = await pod.unroute()
    assert result.outcome is Outcome.DEGRADED
    reason = result.detail["reason"]
    assert reason.startswith("list endpointslices: ClientConnectorError: "), reason
    assert reason.endswith(": waited a fixed delay"), reason
    assert took < FALLBACK_SECONDS + 0.3


async def test_a_slow_api_is_cut_at_the_request_timeout(cp: ControlPlane, make_pod: Any) -> None:
    pod = make_pod()
    pod.delete()
    cp.faults = Faults(delay_seconds=3.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    confirmed = await pod.confirm("deletion")
    assert confirmed.api_failed
    assert confirmed.result.detail["api_error"] == "get pod: no answer within 0.5 s"
    assert loop.time() - started < 1.0
    result, took = await pod.unroute(seconds=2.0)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail["reason"] == (
        "list endpointslices: no answer within 0.5 s: waited a fixed delay"
    )
    assert took < 2.0


async def test_a_pod_without_deletion_timestamp_means_a_container_restart(
    cp: ControlPlane, make_pod: Any
) -> None:
    pod = make_pod()
    confirmed = await pod.confirm("deletion")
    assert confirmed.kind == "restart"
    assert confirmed.result.outcome is Outcome.OK
    assert confirmed.result.detail["reason"] == "no deletionTimestamp"


async def test_a_force_deleted_pod_is_a_deletion(cp: ControlPlane, make_pod: Any) -> None:
    pod = make_pod()
    cp.delete_pod(NAMESPACE, "web-1", {"gracePeriodSeconds": 0})
    confirmed = await pod.confirm("restart")
    assert confirmed.kind == "deletion"
    assert confirmed.result.outcome is Outcome.OK
    assert confirmed.result.detail["pod"] == "not found: force-deleted or already removed"


async def test_events_are_posted_on_the_pod(cp: ControlPlane, make_pod: Any) -> None:
    pod = make_pod()
    await pod.api.post_event("OutOfRotation", "out of rotation after 1.2 s")
    await pod.api.post_event("ShutdownPhaseTimedOut", "drain: timed_out", warning=True)
    events = cp.events_for(NAMESPACE, "web-1")  # in the order posted: each post was awaited
    assert [(e["reason"], e["type"], e["message"]) for e in events] == [
        ("OutOfRotation", "Normal", "out of rotation after 1.2 s"),
        ("ShutdownPhaseTimedOut", "Warning", "drain: timed_out"),
    ]
    assert [e["involvedObject"]["uid"] for e in events] == [pod.identity.uid] * 2
