"""Pins the release phases: wait_exit sees a released group exit (its ports, its processes, or
our own SIGTERM in native mode) or says why it could not by the deadline; quit_proxy names what
it sent, skipped, or failed to send.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.model.plan import ReleaseGroup
from sidecar.model.report import Outcome
from sidecar.settings import ContainerSpec
from sidecar.shutdown.release import quit_proxy, wait_exit
from tests.shutdown.doubles import (
    APP_PORT,
    HangingProcesses,
    HangingSampler,
    NoProcesses,
    RecordingProxy,
    ScriptedProcesses,
    ScriptedTraffic,
    sampling,
)

pytestmark = pytest.mark.looptime


def app_group(
    ports: tuple[int, ...] = (APP_PORT,), process_names: tuple[str, ...] = ()
) -> ReleaseGroup:
    return ReleaseGroup(0, (ContainerSpec("app", "app", ports, process_names),))


async def test_the_groups_ports_disappearing_is_seen_as_its_exit() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic()  # the proxy's port keeps listening: it is not in the group
    loop.call_at(started + 1.1, traffic.listening.discard, APP_PORT)
    async with sampling(traffic) as monitor:
        result = await wait_exit(
            monitor, NoProcesses(), app_group(), deadline=started + 10, own_sigterm=None
        )
    assert loop.time() == pytest.approx(started + 1.25)
    assert result.outcome is Outcome.OK
    assert result.detail == {"seen_by": "listening_sockets", "waited_seconds": 1.25}


async def test_visible_processes_must_end_too_and_then_are_named_as_the_evidence() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = ScriptedTraffic()
    processes = ScriptedProcesses("java")
    loop.call_at(started + 0.6, traffic.listening.discard, APP_PORT)
    loop.call_at(started + 1.6, processes.names.discard, "java")  # a child outlived the socket
    group = app_group(process_names=("java",))
    async with sampling(traffic) as monitor:
        result = await wait_exit(monitor, processes, group, deadline=started + 10, own_sigterm=None)
    assert loop.time() == pytest.approx(started + 1.75)
    assert result.outcome is Outcome.OK
    assert result.detail == {"seen_by": "processes", "waited_seconds": 1.75}
    assert set(processes.asked) == {frozenset({"java"})}


async def test_our_own_sigterm_in_native_mode_is_proof_of_exit_at_once() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    own_sigterm = asyncio.Event()
    loop.call_at(started + 0.4, own_sigterm.set)
    async with sampling(ScriptedTraffic()) as monitor:  # the app's port never goes away
        result = await wait_exit(
            monitor, NoProcesses(), app_group(), deadline=started + 10, own_sigterm=own_sigterm
        )
    # Not at the next sample (0.5): the SIGTERM itself wakes the phase.
    assert loop.time() == pytest.approx(started + 0.4)
    assert result.outcome is Outcome.OK
    assert result.detail == {"seen_by": "own_sigterm", "waited_seconds": 0.4}


async def test_an_exit_nothing_can_observe_is_waited_out_to_the_deadline_and_degraded() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 3.1
    async with sampling(ScriptedTraffic()) as monitor:
        result = await wait_exit(
            monitor, NoProcesses(), app_group(ports=()), deadline=deadline, own_sigterm=None
        )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {
        "reason": "exit not observable (no ports or process names)",
        "waited_seconds": 3.1,
    }


async def test_an_app_that_keeps_listening_times_out_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + 2.6
    async with sampling(ScriptedTraffic()) as monitor:
        result = await wait_exit(
            monitor, NoProcesses(), app_group(), deadline=deadline, own_sigterm=asyncio.Event()
        )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail == {"reason": "still running", "waited_seconds": 2.6}


async def test_a_sampler_that_never_answers_times_out_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    async with sampling(HangingSampler()) as monitor:
        result = await wait_exit(
            monitor, NoProcesses(), app_group(), deadline=deadline, own_sigterm=None
        )
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["reason"] == "still running"


async def test_a_process_probe_that_never_answers_does_not_keep_the_phase_past_the_deadline() -> (
    None
):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    group = app_group(process_names=("java",))
    async with sampling(ScriptedTraffic()) as monitor:
        exited = wait_exit(monitor, HangingProcesses(), group, deadline=deadline, own_sigterm=None)
        result = await asyncio.wait_for(exited, 5)
    assert loop.time() == pytest.approx(deadline)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["reason"] == "still running"


async def test_quitting_sends_envoy_and_the_pilot_agent_their_quit() -> None:
    proxy = RecordingProxy(pilot_agent=True)
    result = await quit_proxy(proxy)
    assert result.outcome is Outcome.OK
    assert result.detail == {"envoy_quit": "sent", "pilot_agent_quit": "sent"}
    assert proxy.calls == ["quit", "quit_pilot_agent"]


async def test_an_absent_pilot_agent_is_skipped_without_degrading() -> None:
    result = await quit_proxy(RecordingProxy(pilot_agent=False))
    assert result.outcome is Outcome.OK
    assert result.detail == {"envoy_quit": "sent", "pilot_agent_quit": "skipped"}


async def test_a_failed_envoy_quit_is_degraded_named_and_the_pilot_agent_still_asked() -> None:
    proxy = RecordingProxy(pilot_agent=True, failing={"quit"})
    result = await quit_proxy(proxy)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {
        "envoy_quit": "failed: quit: connection refused",
        "pilot_agent_quit": "sent",
    }
    assert proxy.calls == ["quit", "quit_pilot_agent"]


async def test_a_failed_pilot_agent_quit_is_degraded_and_named() -> None:
    proxy = RecordingProxy(pilot_agent=True, failing={"quit_pilot_agent"})
    result = await quit_proxy(proxy)
    assert result.outcome is Outcome.DEGRADED
    assert result.detail == {
        "envoy_quit": "sent",
        "pilot_agent_quit": "failed: quit_pilot_agent: connection refused",
    }
