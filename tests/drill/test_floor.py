"""A scenario's floor: callers left the pod, and the last request it served ended."""

from __future__ import annotations

from sidecar.drill.cluster import POD
from sidecar.drill.kubelet import Killed
from sidecar.drill.load import LoadRun, Request
from sidecar.drill.scenarios import ScenarioResult


def _result(*requests: Request, pinned: tuple[Request, ...] = ()) -> ScenarioResult:
    load = LoadRun(100, 0.0, 20.0)
    load.requests = list(requests)
    result = ScenarioResult("coordinated", 10.0, load, killed={"app": Killed("app")})
    result.unready_at, result.moved_at = 10.1, 12.1
    if pinned:
        result.pinned = LoadRun(5, 0.0, 20.0)
        result.pinned.requests = list(pinned)
    return result


def test_the_floor_is_the_slowest_request_in_flight_when_the_data_plane_moved() -> None:
    result = _result(
        Request(11.9, 14.6, 200, None, POD),  # the slowest in flight at 12.1
        Request(12.5, 12.7, 200, None, "web-2"),  # elsewhere: not the pod's
        Request(11.0, 11.2, 200, None, POD),
    )
    result.killed["app"].sigterm_at = 15.0
    assert result.floor_at == 14.6
    row = result.row(30)
    assert row["floor_seconds"] == 4.6
    assert row["above_floor_seconds"] == 0.4


def test_with_nothing_in_flight_the_floor_is_the_data_plane_moving() -> None:
    result = _result(Request(11.0, 11.2, 200, None, POD))
    result.killed["app"].sigterm_at = 11.5  # too early: below the floor
    assert result.floor_at == 12.1
    assert result.row(30)["above_floor_seconds"] == -0.6


def test_a_pinned_client_holds_the_floor_until_told_to_close_and_its_failures_count() -> None:
    result = _result(
        Request(11.0, 11.2, 200, None, POD),
        pinned=(
            Request(12.9, 13.0, 200, None, POD, closed=True),  # moved away at 13.0
            Request(13.2, 13.3, 200, None, "web-2"),
            Request(13.5, 13.6, None, "ClientOSError"),
        ),
    )
    assert result.floor_at == 13.0
    row = result.row(30)
    assert (row["requests"], row["ok"], row["transport_errors"]) == (4, 3, 1)
    assert row["failures"] == {"ClientOSError": 1}


def test_through_a_registry_the_floor_starts_when_the_callers_read_the_pod_gone() -> None:
    result = _result(Request(11.0, 11.2, 200, None, POD))
    result.routing, result.moved_at, result.callers_left_at = "registry", None, 13.4
    assert result.floor_at == 13.4
    result.callers_left_at = None
    assert result.floor_at is None
    assert result.row(30)["above_floor_seconds"] is None
