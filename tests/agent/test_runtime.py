"""The agent's stop: every stage runs even when one fails; each failure is named, never hidden."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from sidecar.agent.runtime import start_agent, stop_agent
from sidecar.drill.procs import free_port
from sidecar.errors import AgentStopError
from tests.shutdown.doubles import pod_settings


class BrokenTraffic:
    """A traffic source whose close fails, as a kernel socket might."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True
        raise OSError(9, "Bad file descriptor")


class ClosingEnvoy:
    """An Envoy admin client that records its close."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_a_failing_stop_stage_is_named_and_later_stages_still_run() -> None:
    settings = pod_settings(server={"host": "127.0.0.1", "port": free_port()})
    agent = await start_agent(settings)
    traffic, envoy = BrokenTraffic(), ClosingEnvoy()
    agent.traffic.close()  # the real one is replaced by the broken double
    agent.traffic = traffic  # type: ignore[assignment]
    agent.envoy = envoy  # type: ignore[assignment]
    with capture_logs() as logs, pytest.raises(AgentStopError) as raised:
        await stop_agent(agent)
    assert raised.value.failures == ["traffic: OSError: [Errno 9] Bad file descriptor"]
    assert "traffic" in str(raised.value)
    assert traffic.closed
    assert envoy.closed  # the stage after the failing one still ran
    assert [(e["event"], e["stage"]) for e in logs if e["log_level"] == "error"] == [
        ("stop_stage_failed", "traffic")
    ]


async def test_a_clean_stop_raises_nothing() -> None:
    settings = pod_settings(server={"host": "127.0.0.1", "port": free_port()})
    agent = await start_agent(settings)
    envoy = ClosingEnvoy()
    if agent.envoy is not None:
        await agent.envoy.close()
    agent.envoy = envoy  # type: ignore[assignment]
    await stop_agent(agent)
    assert envoy.closed
