"""KubeApi against the API stand-in: confirm, unroute across Services and watch faults, Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from sidecar.adapters.kube import KubeApi
from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.drill.objects import NAMESPACE, pod_object, service_object
from sidecar.model.report import Outcome
from sidecar.model.rotation import pod_key
from sidecar.settings import KubernetesSettings, PodIdentity
from sidecar.shutdown.confirm import Confirmation, confirm
from sidecar.shutdown.unroute import unroute

#: How long the stand-in's EndpointSlice controller takes to act (D10 batch period).
CONTROLLER_DELAY_SECONDS = 0.4
FALLBACK_SECONDS = 0.5


@pytest.fixture
async def cp() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane()
    await plane.start()
    yield plane
    await plane.stop()


class Pod:
    """One pod in the stand-in, with the adapter the agent in it would use."""

    def __init__(
        self,
        cp: ControlPlane,
        tmp: Path,
        ips: tuple[str, ...],
        inactivity_seconds: float = 1.0,
        **kw: Any,
    ) -> None:
        self.cp = cp
        self.doc = cp.create("pods", pod_object("web-1", ips, **kw))
        self.identity = PodIdentity("web-1", NAMESPACE, self.doc["metadata"]["uid"], ips)
        settings = KubernetesSettings(
            enabled=True,
            kubeconfig=str(cp.write_kubeconfig(tmp / "kubeconfig")),
            request_timeout_seconds=0.5,
            watch_inactivity_seconds=inactivity_seconds,
        )
        self.api = KubeApi(settings, self.identity)

    async def confirm(self, policy: Literal["deletion", "restart"]) -> Confirmation:
        deadline = asyncio.get_running_loop().time() + 5
        return await confirm(
            self.api, uid=self.identity.uid, when_unconfirmed=policy, deadline=deadline
        )

    def delete(self) -> None:
        self.deleted_at = asyncio.get_running_loop().time()
        self.cp.delete_pod(NAMESPACE, "web-1")

    async def unroute(self, seconds: float = 5.0) -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await unroute(
            self.api,
            pod_key(self.identity.uid, self.identity.ips),
            deadline=started + seconds,
            fallback_delay_seconds=FALLBACK_SECONDS,
        )
        return result, loop.time() - started


@pytest.fixture
async def make_pod(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Pod] = []

    def make(ips: tuple[str, ...] = ("10.1.0.7",), **kw: Any) -> Pod:
        pod = Pod(cp, tmp_path, ips, **kw)
        # The slices are written at once for the setup; the deletion then takes a while (D10).
        cp.controller_delay_seconds = CONTROLLER_DELAY_SECONDS
        made.append(pod)
        return pod

    yield make
    for pod in made:
        await pod.api.close()


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


def slow_deletion(
    cp: ControlPlane, make_pod: Any, *, controller_seconds: float, **kw: Any
) -> tuple[Pod, asyncio.Task[tuple[Any, float]]]:
    """A pod in one Service, deleted while unroute runs; the controller takes its time."""
    cp.create("services", service_object("web"))
    pod = make_pod(**kw)
    cp.controller_delay_seconds = controller_seconds
    task = asyncio.create_task(pod.unroute())
    pod.delete()
    return pod, task


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
