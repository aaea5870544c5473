"""A pod deleted under load, with a real app, a real Envoy and the agent as processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.drill.scenario import Outcome, Params, run

pytestmark = pytest.mark.envoy


def _finished(outcome: Outcome) -> dict[str, Any]:
    lines = [line for line in outcome.agent_log if line.get("event") == "shutdown_finished"]
    assert len(lines) == 1, outcome.agent_log[-5:]
    return lines[0]


async def test_no_request_fails_and_hooks_return_in_order_before_the_deadline(
    tmp_path: Path,
) -> None:
    params = Params()
    outcome = await run(tmp_path, params)

    assert outcome.failures() == []
    assert outcome.hook_errors == {}
    app_released, proxy_released = outcome.hook_returned["app"], outcome.hook_returned["proxy"]
    to_pod = outcome.to_pod()
    assert len(to_pod) > 20, "the pod must have served real traffic before its deletion"
    # The app was released only after traffic went quiet and every request to the pod finished.
    assert max(r.ended for r in to_pod) <= app_released
    assert app_released - max(r.started for r in to_pod) >= params.quiet_window_seconds
    # The pinned client kept sending to the pod during the shutdown until the drain told it to
    # close its connection; after the app's release it only reached the other replica.
    pinned = [r for r in outcome.requests if r.client == "pinned"]
    assert any(r.closed and r.target == "pod" and r.started > outcome.t0 for r in pinned)
    assert all(r.target == "other" for r in pinned if r.started > app_released)
    # The proxy was released only after the app process had exited; both before the deadline.
    assert outcome.exited["app"] <= proxy_released
    assert proxy_released - outcome.t0 < params.grace_seconds
    summary = _finished(outcome)
    assert summary["phases"]["drain"]["outcome"] == "ok"
    assert summary["phases"]["quiesce"]["outcome"] == "ok"
    assert summary["phases"]["quiesce"]["proxy_drain"] == "started"
    assert summary["phases"]["release_proxy"]["envoy_quit"] == "sent"
    assert summary["released"]["app"]["reason"] == "turn"
    # The API said what happened: a deletion, then the endpoint turned not ready; only after
    # that was the app released.
    assert summary["phases"]["confirm"]["by"] == "api"
    assert summary["phases"]["unroute"]["outcome"] == "ok"
    assert summary["phases"]["unroute"]["verdict"] == "out_of_rotation"
    assert outcome.unready_at is not None
    assert outcome.unready_at - outcome.t0 >= params.controller_delay_seconds * 0.9
    assert outcome.unready_at <= app_released
    reasons = [reason for _, reason in outcome.events]
    assert reasons[:1] == ["OutOfRotation"]
    assert {"AppReleased", "ProxyReleased", "ShutdownFinished"} <= set(reasons)
