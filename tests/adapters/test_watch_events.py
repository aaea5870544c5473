"""KubeApi's slice watch when the stream carries lines that are no valid event, over real HTTP.

Each such line is counted and the slices are listed again (the line may have been an update
that is now lost); unroute still follows the slices to out-of-rotation (kubernetes-behaviour E2).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from sidecar.drill.control_plane import ControlPlane, Faults
from sidecar.model.report import Outcome
from tests.adapters.kube_pod import slow_deletion

_NOT_A_SLICE = {"metadata": {"name": "web-x", "labels": {"kubernetes.io/service-name": "web"}}}

GARBAGE = {
    "not JSON": b"this is not json",
    "not UTF-8": b"\xff\xfe{}",
    "JSON, not an object": b"[1, 2, 3]",
    "a number": b"42",
    "no object": b'{"type": "MODIFIED"}',
    "no type": json.dumps({"object": _NOT_A_SLICE}).encode(),
    "object not an object": b'{"type": "ADDED", "object": "web-x"}',
    "not a valid slice": json.dumps(
        {"type": "MODIFIED", "object": {**_NOT_A_SLICE, "endpoints": "many"}}
    ).encode(),
    "unknown type": json.dumps({"type": "SURPRISE", "object": _NOT_A_SLICE}).encode(),
}


@pytest.fixture(autouse=True)
def _client_imported() -> None:
    # The first import of the client takes a while (more off the loop on a busy machine): done
    # here, so that every watch opens well before the controller acts.
    importlib.import_module("kubernetes_asyncio.client")


@pytest.mark.parametrize("line", GARBAGE.values(), ids=GARBAGE.keys())
async def test_a_line_that_is_no_valid_event_is_counted_and_unroute_still_gets_out(
    cp: ControlPlane, make_pod: Any, line: bytes
) -> None:
    cp.faults = Faults(watch_garbage=[line])
    with capture_logs() as logs:
        pod, task = slow_deletion(cp, make_pod, controller_seconds=1.0)
        result, took = await task
    assert result.outcome is Outcome.OK, result.detail
    assert result.detail["verdict"] == "out_of_rotation"
    assert took >= 0.9  # followed the slices: out only once the controller had acted
    assert cp.faults.watch_garbage == []  # the line was sent
    assert cp.calls("GET", "/endpointslices", watch=True) == 2
    assert pod.api.skipped_watch_events == 1
    skipped = [e for e in logs if e["event"] == "slice_watch_event_skipped"]
    assert [e["skipped_total"] for e in skipped] == [1], logs
    # The skipped line may have been a lost update: the slices were listed again.
    assert cp.calls("GET", "/endpointslices", watch=False) == 2


async def test_a_truncated_last_line_is_counted_and_the_slices_listed_again(
    cp: ControlPlane, make_pod: Any
) -> None:
    # The watch's first event (the controller marking the endpoint not ready) is cut in half.
    cp.faults = Faults(truncate_next_watches=1)
    with capture_logs() as logs:
        pod, task = slow_deletion(cp, make_pod, controller_seconds=1.0)
        result, took = await task
    assert result.outcome is Outcome.OK, result.detail
    assert result.detail["verdict"] == "out_of_rotation"
    assert took >= 0.9
    assert cp.faults.truncate_next_watches == 0
    assert pod.api.skipped_watch_events == 1
    skipped = [e for e in logs if e["event"] == "slice_watch_event_skipped"]
    assert len(skipped) == 1, logs
    assert skipped[0]["reason"].startswith("not JSON"), skipped
    assert cp.calls("GET", "/endpointslices", watch=False) == 2
