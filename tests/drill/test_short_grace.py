"""The drill at a short grace: 10 s, requests of 1-3 s; coordinated must lose none (budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.drill.main import run_all
from sidecar.drill.params import DrillParams
from sidecar.model.deadline import plan_from_settings
from sidecar.settings import from_mapping

pytestmark = pytest.mark.envoy

#: The issue's pod: `terminationGracePeriodSeconds: 10`, requests of up to 3 s, kept small.
SHORT = DrillParams(
    rate_per_second=20,
    lead_seconds=1.0,
    tail_seconds=0.5,
    latency_ms=(1000, 3000),
    grace_seconds=10,
)
#: The hook's answer reaches the kubelet simulator, which then signals: a few ms, bounded.
_SIGNAL_SLACK_SECONDS = 0.3


async def test_grace_10_with_3_s_requests_loses_nothing_and_releases_within_the_plan(
    tmp_path: Path,
) -> None:
    (result,) = await run_all(SHORT, ["coordinated"])
    assert len(result.load.requests) > 20
    assert result.load.failures() == {}
    # The plan the agent starts from for this pod (app, proxy; grace 10 s, default budget).
    settings = from_mapping(
        {
            "containers": [{"name": "app"}, {"name": "proxy", "role": "proxy"}],
            "server": {"allow_unauthenticated": True},
            "budget": {"grace_seconds": SHORT.grace_seconds},
        },
        {},
    )
    latest = plan_from_settings(settings, started_at=0.0).release_by[0]
    app = result.killed["app"]
    assert app.hook_started is not None
    assert app.sigterm_at is not None
    assert app.sigterm_at - app.hook_started <= latest + _SIGNAL_SLACK_SECONDS
    # Released at its turn (drained), which the old 4.5 s latest release cut short.
    summary = result.agent_summary
    assert summary is not None
    assert summary["released"]["app"]["reason"] == "turn"
