"""The `coordinated` recipe end to end: a pod deleted under load loses no request, in order.

Pins, through the drill's own harness with real processes (app, Envoy, agent, ingress): no
request fails, including a client pinned on one keep-alive connection to the pod, which is
told `Connection: close` and moves away; the app's hook is answered only after every request
to the pod ended and traffic went quiet (a learned lull, or its callers closing); the proxy's
only after the app exited; both before the deadline; one `shutdown_finished` line and the
Kubernetes Events, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.drill.cluster import POD
from sidecar.drill.load import Request
from sidecar.drill.params import DrillParams
from sidecar.drill.scenarios import ScenarioResult, run_scenario

pytestmark = pytest.mark.envoy

PARAMS = DrillParams(
    rate_per_second=50,
    lead_seconds=1.0,
    tail_seconds=0.5,
    latency_ms=(100, 300),
    propagation_delay_seconds=1.0,
    grace_seconds=20,
    controller_delay_seconds=0.5,
    pinned_interval_seconds=0.05,
)


def _finished(result: ScenarioResult) -> dict[str, Any]:
    lines = [line for line in result.agent_log if line["event"] == "shutdown_finished"]
    assert len(lines) == 1, result.agent_log[-5:]
    return lines[0]


def _released(result: ScenarioResult, container: str) -> float:
    """When the kubelet saw the container's preStop hook answered."""
    killed = result.killed[container]
    assert killed.hook_error is None, f"{container}: {killed.hook_error}"
    assert killed.hook_ended is not None, f"{container}: its hook never ended"
    return killed.hook_ended


async def test_no_request_fails_and_hooks_return_in_order_before_the_deadline(
    tmp_path: Path,
) -> None:
    result = await run_scenario(tmp_path, "coordinated", PARAMS)
    assert result.pinned is not None
    requests: list[Request] = result.load.requests + result.pinned.requests

    assert result.load.failures() == {}
    assert result.pinned.failures() == {}
    app_released, proxy_released = _released(result, "app"), _released(result, "proxy")
    to_pod = [r for r in requests if r.served_by == POD]
    assert len(to_pod) > 20, "the pod must have served real traffic before its deletion"
    # The app was released only after traffic went quiet and every request to the pod finished:
    # a lull as long as the window the agent learned, or its callers closing their connections.
    assert max(r.ended for r in to_pod) <= app_released
    quiesce = _finished(result)["phases"]["quiesce"]
    assert quiesce["ended_by"] in {"lull", "peers_closed"}, quiesce
    if quiesce["ended_by"] == "lull":
        assert app_released - max(r.started for r in to_pod) >= quiesce["window_seconds"]
    # The pinned client kept sending to the pod during the shutdown until the drain told it to
    # close its connection; after the app's release it only reached another replica.
    pinned = result.pinned.requests
    assert any(r.closed and r.served_by == POD and r.started > result.t0 for r in pinned)
    after_release = [r.served_by for r in pinned if r.started > app_released]
    assert after_release, "the pinned client must have sent after the app's release"
    assert POD not in after_release
    # The proxy was released only after the app process had exited; both before the deadline.
    app_exited = result.killed["app"].exited_at
    assert app_exited is not None
    assert app_exited <= proxy_released
    assert proxy_released - result.t0 < PARAMS.grace_seconds
    summary = _finished(result)
    assert summary["phases"]["drain"]["outcome"] == "ok"
    assert summary["phases"]["quiesce"]["outcome"] == "ok"
    assert summary["phases"]["quiesce"]["proxy_drain"] == "started"
    assert summary["phases"]["release_proxy"]["envoy_quit"] == "sent"
    # Injection pointed the agent at pilot-agent (the drill's stand-in): told to quit too.
    assert summary["phases"]["release_proxy"]["pilot_agent_quit"] == "sent"
    assert summary["phases"]["release_proxy"]["outcome"] == "ok"
    assert summary["released"]["app"]["reason"] == "turn"
    # The API said what happened: a deletion, then the endpoint turned not ready; only after
    # that was the app released.
    assert summary["phases"]["confirm"]["by"] == "api"
    assert summary["phases"]["unroute"]["outcome"] == "ok"
    assert summary["phases"]["unroute"]["verdict"] == "out_of_rotation"
    assert result.unready_at is not None
    assert result.unready_at - result.t0 >= PARAMS.controller_delay_seconds * 0.9
    assert result.unready_at <= app_released
    # The agent's Events on the pod: out of rotation first, then each release and the end.
    reasons = [reason for _, reason in result.events]
    assert reasons[:1] == ["OutOfRotation"]
    assert {"AppReleased", "ProxyReleased", "ShutdownFinished"} <= set(reasons)
    assert reasons.index("AppReleased") < reasons.index("ProxyReleased")
    assert reasons.index("ProxyReleased") < reasons.index("ShutdownFinished")
