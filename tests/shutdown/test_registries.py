"""Pins announce and retire over fake registries: the step sequence, retries with doubling backoff
capped at 2 s, registries in parallel, nothing past the deadline, a failing back end isolated,
and a Result whose detail names every registry and action with its outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from sidecar.errors import AdapterError, ConfigError
from sidecar.model.registry import Answer, Presence
from sidecar.model.report import Outcome
from sidecar.settings.registries import RetrySettings
from sidecar.shutdown.registries import Announce, Retire

pytestmark = pytest.mark.looptime

#: A scripted answer: a value, an exception to raise, ("slow", seconds, value), or HANG.
HANG = "hang"


@dataclass
class FakeRegistry:
    """A Registry whose every call answers from a script; the last entry repeats."""

    name: str = "reg"
    can_mark_down: bool = True
    can_force: bool = True
    script: dict[str, list[Any]] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)

    async def _answer(self, step: str, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        self.calls.append((step, loop.time()))
        answers = self.script.get(step, [None])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer == HANG:
            await asyncio.Event().wait()
        if isinstance(answer, tuple):
            await asyncio.sleep(answer[1])
            answer = answer[2]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def mark_down(self, deadline: float) -> None:
        await self._answer("mark_down", deadline)

    async def deregister(self, deadline: float) -> Answer:
        return await self._answer("deregister", deadline) or Answer.OK

    async def is_present(self, deadline: float) -> Presence:
        return await self._answer("is_present", deadline) or Presence.ABSENT

    async def force_remove(self, deadline: float) -> None:
        await self._answer("force_remove", deadline)

    def steps(self) -> list[str]:
        return [step for step, _ in self.calls]


@dataclass
class FakeAction:
    """An offline call or a cleanup that answers from a script."""

    name: str = "offline"
    script: list[Any] = field(default_factory=lambda: [None])
    ran_at: list[float] = field(default_factory=list)

    async def run(self, deadline: float) -> None:
        self.ran_at.append(asyncio.get_running_loop().time())
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer


def _now() -> float:
    return asyncio.get_running_loop().time()


async def test_retire_deregisters_reads_back_and_reports_removed() -> None:
    registry = FakeRegistry("eureka")
    result = await Retire([registry]).run(_now() + 10)
    assert registry.steps() == ["deregister", "is_present"]
    assert result.outcome is Outcome.OK
    assert result.detail == {
        "registries": {
            "eureka": {"outcome": "removed", "deregister": "ok", "read": "absent", "attempts": 2}
        }
    }


async def test_an_entry_still_there_is_force_removed_and_read_again() -> None:
    registry = FakeRegistry(script={"is_present": [Presence.PRESENT, Presence.ABSENT]})
    result = await Retire([registry]).run(_now() + 10)
    assert registry.steps() == ["deregister", "is_present", "force_remove", "is_present"]
    entry = result.detail["registries"]["reg"]
    assert (entry["outcome"], entry["force"], entry["read_again"]) == ("forced", "ok", "absent")
    assert result.outcome is Outcome.OK


async def test_without_force_remove_an_entry_still_there_is_an_error() -> None:
    registry = FakeRegistry(can_force=False, script={"is_present": [Presence.PRESENT]})
    result = await Retire([registry]).run(_now() + 10)
    assert registry.steps() == ["deregister", "is_present"]
    assert result.detail["registries"]["reg"]["outcome"] == "still_present"
    assert result.outcome is Outcome.ERROR


async def test_the_registry_saying_no_such_entry_and_a_read_confirming_it_is_already_absent() -> (
    None
):
    registry = FakeRegistry(script={"deregister": [Answer.GONE]})
    result = await Retire([registry]).run(_now() + 10)
    assert result.detail["registries"]["reg"]["outcome"] == "already_absent"


async def test_failures_are_retried_with_doubling_backoff_capped_at_two_seconds() -> None:
    failure = AdapterError("HTTP 503: busy")
    registry = FakeRegistry(script={"deregister": [failure] * 7 + [Answer.OK]})
    start = _now()
    result = await Retire([registry], backoff=RetrySettings(attempts=8)).run(start + 60)
    times = [round(t - start, 3) for step, t in registry.calls if step == "deregister"]
    assert times == [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 5.1, 7.1]
    entry = result.detail["registries"]["reg"]
    assert entry["outcome"] == "removed"
    assert entry["attempts"] == 9  # eight deregisters, one read
    assert "error" not in entry


async def test_when_attempts_run_out_the_failure_is_reported_and_the_read_still_decides() -> None:
    registry = FakeRegistry(script={"deregister": [AdapterError("HTTP 500: boom")]})
    result = await Retire([registry], backoff=RetrySettings(attempts=3)).run(_now() + 60)
    assert registry.steps() == ["deregister"] * 3 + ["is_present"]
    entry = result.detail["registries"]["reg"]
    assert (entry["deregister"], entry["read"], entry["outcome"]) == ("failed", "absent", "removed")
    assert entry["error"] == "HTTP 500: boom"


async def test_unknown_reads_are_never_absence_and_end_in_an_error() -> None:
    registry = FakeRegistry(script={"is_present": [Presence.UNKNOWN]})
    result = await Retire([registry], backoff=RetrySettings(attempts=2)).run(_now() + 60)
    assert registry.steps() == [
        "deregister",
        "is_present",
        "is_present",
        "force_remove",
        "is_present",
        "is_present",
    ]
    assert result.detail["registries"]["reg"]["outcome"] == "error"
    assert result.outcome is Outcome.ERROR


async def test_a_hanging_registry_is_cut_at_the_deadline_and_reported_timed_out() -> None:
    registry = FakeRegistry(script={"deregister": [HANG]})
    deadline = _now() + 3
    result = await Retire([registry]).run(deadline)
    assert _now() == pytest.approx(deadline)
    entry = result.detail["registries"]["reg"]
    assert entry == {
        "outcome": "error",
        "deregister": "failed",
        "attempts": 1,
        "error": "no answer before the deadline",
        "timed_out": True,
    }
    assert result.outcome is Outcome.TIMED_OUT


async def test_no_retry_starts_when_its_backoff_would_reach_the_deadline() -> None:
    registry = FakeRegistry(script={"deregister": [("slow", 0.95, AdapterError("HTTP 503"))]})
    start = _now()
    result = await Retire([registry]).run(start + 1.0)
    assert registry.steps() == ["deregister"]
    assert _now() - start == pytest.approx(0.95)
    assert result.detail["registries"]["reg"]["timed_out"] is True


async def test_registries_retire_in_parallel_each_in_its_own_time() -> None:
    slow = FakeRegistry("slow", script={"deregister": [("slow", 2.0, Answer.OK)]})
    fast = FakeRegistry("fast")
    start = _now()
    result = await Retire([slow, fast]).run(start + 10)
    assert _now() - start == pytest.approx(2.0)
    assert fast.calls[-1][1] == pytest.approx(start)
    assert set(result.detail["registries"]) == {"slow", "fast"}


async def test_a_back_end_bug_is_reported_without_stopping_the_others() -> None:
    broken = FakeRegistry("broken", script={"deregister": [KeyError("oops")]})
    fine = FakeRegistry("fine")
    result = await Retire([broken, fine], backoff=RetrySettings(attempts=1)).run(_now() + 10)
    assert result.detail["registries"]["broken"]["error"] == "KeyError: 'oops'"
    assert result.detail["registries"]["fine"]["outcome"] == "removed"


async def test_cleanup_actions_run_after_the_registries_are_retired() -> None:
    registry = FakeRegistry(script={"deregister": [("slow", 1.0, Answer.OK)]})
    cleanup = FakeAction("cleanup-config")
    start = _now()
    result = await Retire([registry], [cleanup]).run(start + 10)
    assert cleanup.ran_at == [pytest.approx(start + 1.0)]
    assert result.detail["actions"] == {"cleanup-config": {"outcome": "ok", "attempts": 1}}


async def test_announce_marks_every_registry_down_and_runs_the_offline_call() -> None:
    consul = FakeRegistry("consul")
    etcd = FakeRegistry("etcd", can_mark_down=False)
    offline = FakeAction(script=[AdapterError("connection refused"), None])
    result = await Announce([consul, etcd], [offline]).run(_now() + 10)
    assert consul.steps() == ["mark_down"]
    assert etcd.steps() == []
    assert result.outcome is Outcome.OK
    assert result.detail == {
        "registries": {
            "consul": {"outcome": "marked_down", "attempts": 1},
            "etcd": {"outcome": "unsupported"},
        },
        "actions": {"offline": {"outcome": "ok", "attempts": 2}},
    }


async def test_a_mark_down_that_keeps_failing_is_an_error_naming_the_cause() -> None:
    nacos = FakeRegistry("nacos", script={"mark_down": [AdapterError("HTTP 403: denied")]})
    result = await Announce([nacos], backoff=RetrySettings(attempts=2)).run(_now() + 10)
    assert result.outcome is Outcome.ERROR
    assert result.detail["registries"]["nacos"] == {
        "outcome": "error",
        "attempts": 2,
        "error": "HTTP 403: denied",
    }


async def test_nothing_to_do_is_skipped() -> None:
    result = await Announce([FakeRegistry(can_mark_down=False)]).run(_now() + 10)
    assert result.outcome is Outcome.SKIPPED
    assert (await Retire([]).run(_now() + 10)).outcome is Outcome.SKIPPED


def test_two_registries_of_one_name_are_a_settings_error() -> None:
    with pytest.raises(ConfigError, match="registries: names must be unique, got eureka twice"):
        Retire([FakeRegistry("eureka"), FakeRegistry("eureka")])
