"""Kubernetes Events: which milestone or warning gets which reason; a slow API never waits."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from sidecar.agent.events import EventPoster, FanOut
from sidecar.model.report import Outcome, Phase, PhaseRecord, Release
from tests.shutdown.doubles import forever, pod_settings

pytestmark = pytest.mark.looptime


class Sink:
    """An EventSink that keeps every post, or never answers."""

    def __init__(self, *, hang: bool = False) -> None:
        self.posts: list[tuple[str, str, bool]] = []
        self.hang = hang

    async def post_event(self, reason: str, message: str, *, warning: bool = False) -> None:
        if self.hang:
            await forever()
        self.posts.append((reason, message, warning))


def _record(phase: Phase, outcome: Outcome, **detail: object) -> PhaseRecord:
    return PhaseRecord(phase, 10.0, 12.5, outcome, dict(detail))


async def _posted(poster: EventPoster) -> None:
    await poster.flush(5)


async def test_out_of_rotation_is_a_milestone_and_other_good_phases_post_nothing() -> None:
    sink = Sink()
    poster = EventPoster(sink, pod_settings())
    poster.phase_finished(_record(Phase.UNROUTE, Outcome.OK, verdict="out_of_rotation"))
    poster.phase_finished(_record(Phase.DRAIN, Outcome.OK, in_flight=0))
    await _posted(poster)
    assert sink.posts == [
        ("OutOfRotation", "out of rotation after 2.5 s (verdict=out_of_rotation)", False)
    ]


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (Outcome.TIMED_OUT, "ShutdownPhaseTimedOut"),
        (Outcome.DEGRADED, "ShutdownPhaseDegraded"),
        (Outcome.ERROR, "ShutdownPhaseFailed"),
    ],
)
async def test_a_phase_that_did_not_end_well_is_a_warning_naming_the_phase(
    outcome: Outcome, reason: str
) -> None:
    sink = Sink()
    poster = EventPoster(sink, pod_settings())
    poster.phase_finished(PhaseRecord(Phase.EXIT, 0, 1, outcome, {"reason": "still running"}, 0))
    await _posted(poster)
    assert sink.posts == [(reason, f"exit:0: {outcome} (reason=still running)", True)]


async def test_releases_name_the_container_and_tell_app_from_proxy() -> None:
    sink = Sink()
    poster = EventPoster(sink, pod_settings())
    poster.container_released(Release("app", 3.0, "turn"))
    poster.container_released(Release("envoy", 4.0, "deadline"))
    await _posted(poster)
    assert sink.posts == [
        ("AppReleased", "container app released (turn)", False),
        ("ProxyReleased", "container envoy released (deadline)", False),
    ]


async def test_the_summary_is_a_warning_unless_the_shutdown_was_clean() -> None:
    sink = Sink()
    poster = EventPoster(sink, pod_settings())
    poster.shutdown_finished(
        {"outcome": "degraded", "duration_seconds": 4.2, "budget_left_seconds": 25.8}
    )
    await _posted(poster)
    assert sink.posts == [
        ("ShutdownFinished", "shutdown degraded in 4.2 s, 25.8 s of the budget left", True)
    ]


async def test_a_hanging_events_api_never_delays_the_caller_and_is_counted_once_per_post() -> None:
    sink = Sink(hang=True)
    settings = pod_settings(kubernetes={"enabled": False, "request_timeout_seconds": 2})
    poster = EventPoster(sink, settings)
    loop = asyncio.get_running_loop()
    before = loop.time()
    poster.container_released(Release("app", 3.0, "turn"))
    assert loop.time() == before  # posting is fire and forget
    with capture_logs() as logs:
        await poster.flush(10)
    # A sink that never gives up is cut just after the API timeout, and the warning says so.
    assert loop.time() == pytest.approx(before + 2.5)
    assert poster.failures == 1
    assert [(e["reason"], e["error"]) for e in logs] == [("AppReleased", "no answer within 2.5 s")]


async def test_fan_out_tells_every_listener_in_order() -> None:
    first, second = Sink(), Sink()
    posters = (EventPoster(first, pod_settings()), EventPoster(second, pod_settings()))
    fan = FanOut(*posters)
    fan.container_released(Release("app", 1.0, "turn"))
    fan.phase_finished(_record(Phase.RETIRE, Outcome.ERROR, error="boom"))
    fan.shutdown_finished({"outcome": "ok", "duration_seconds": 1, "budget_left_seconds": 2})
    for poster in posters:
        await _posted(poster)
    for sink in (first, second):
        assert [p[0] for p in sink.posts] == [
            "AppReleased",
            "ShutdownPhaseFailed",
            "ShutdownFinished",
        ]


async def test_each_registry_outcome_is_an_event_and_a_failed_one_a_warning() -> None:
    sink = Sink()
    poster = EventPoster(sink, pod_settings())
    poster.phase_finished(
        _record(
            Phase.ANNOUNCE,
            Outcome.OK,
            registries={"eureka": {"outcome": "marked_down", "attempts": 1}},
        )
    )
    retired = {
        "consul": {"outcome": "still_present", "attempts": 5},
        "eureka": {"outcome": "removed", "attempts": 2},
    }
    poster.phase_finished(_record(Phase.RETIRE, Outcome.OK, registries=retired))
    await _posted(poster)
    assert [p for p in sink.posts if p[0].startswith("Registry")] == [
        ("RegistryMarkedDown", "eureka: marked_down (1 attempt)", False),
        ("RegistryRetired", "consul: still_present (5 attempts)", True),
        ("RegistryRetired", "eureka: removed (2 attempts)", False),
    ]
