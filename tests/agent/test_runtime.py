"""The agent's stop: every stage runs, failures named; the exit wait follows the current plan."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from sidecar.agent.runtime import (
    exit_when_safe,
    start_agent,
    stop_agent,
    wait_until_safe_to_exit,
)
from sidecar.drill.procs import free_port
from sidecar.errors import AgentStopError
from sidecar.shutdown.coordinator import Coordinator
from tests.shutdown.doubles import (
    NoProcesses,
    RecordingProxy,
    ScriptedPod,
    ScriptedTraffic,
    endpoint,
    pod_doc,
    pod_settings,
    slice_of,
)


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


@pytest.mark.looptime
async def test_the_exit_wait_follows_the_budget_the_api_replanned() -> None:
    # Settings say 4 s; the pod was deleted with 60 s, and the API says so after 1 s, while our
    # own SIGTERM (classic mode) came with the first hook.
    api = ScriptedPod([(1.0, pod_doc(deleting_grace_seconds=60))], [slice_of("web", endpoint())])
    coordinator = Coordinator(
        pod_settings(budget={"grace_seconds": 4}),
        traffic=ScriptedTraffic(),
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        api=api,
    )
    loop = asyncio.get_running_loop()
    hooks = [asyncio.ensure_future(coordinator.hook(name)) for name in ("app", "envoy")]
    reason = await wait_until_safe_to_exit(coordinator, linger_seconds=5)
    budget = coordinator.status().budget
    assert budget is not None
    assert budget.grace_seconds == 60
    # The endpoint never left rotation, so the flight ran to the replanned times, far past 4 s.
    assert reason == "finished"
    assert loop.time() > budget.started_at + 50
    assert all(hook.done() for hook in hooks)  # no held hook is cut by our exit
    await asyncio.gather(*hooks)
    await coordinator.close()


class HangingEnvoy:
    """An Envoy admin client whose close never ends."""

    async def close(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.looptime
async def test_a_stop_stage_that_hangs_is_cut_and_named() -> None:
    settings = pod_settings(server={"host": "127.0.0.1", "port": free_port()})
    agent = await start_agent(settings)
    if agent.envoy is not None:
        await agent.envoy.close()
    agent.envoy = HangingEnvoy()  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(AgentStopError) as raised:
        await stop_agent(agent)
    assert raised.value.failures == ["envoy: did not end within 2.0 s"]
    assert loop.time() - began == pytest.approx(2.0, abs=0.2)


class BrokenExitWait(Coordinator):
    """A coordinator whose finish cannot be awaited: a bug in the exit wait."""

    async def wait_finished(self) -> None:
        raise RuntimeError("boom")


@pytest.mark.looptime
async def test_a_bug_in_the_exit_wait_keeps_the_agent_serving_until_the_deadline() -> None:
    coordinator = BrokenExitWait(
        pod_settings(budget={"grace_seconds": 10}),
        traffic=ScriptedTraffic(),
        processes=NoProcesses(),
        proxy=RecordingProxy(),
    )
    coordinator.start("app")
    budget = coordinator.status().budget
    assert budget is not None
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        reason = await exit_when_safe(coordinator, linger_seconds=1)
    assert reason == "exit_wait_failed"
    assert loop.time() >= budget.hard_deadline  # the held hooks got their whole budget
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["exit_wait_failed"]
    await coordinator.close()
