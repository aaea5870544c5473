"""POST /prepare: announce and the preparation action, once each, token first, never a release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.adapters.http_action import HttpAction, HttpClient
from sidecar.agent.metrics import Metrics
from sidecar.agent.runtime import start_agent, stop_agent
from sidecar.agent.server import start_server
from sidecar.drill.procs import free_port
from sidecar.errors import AdapterError
from sidecar.model.http_action import identity_of, render_action
from sidecar.model.report import Outcome, Result
from sidecar.model.traffic import TrafficSample
from sidecar.settings import from_mapping
from sidecar.settings.registries import HttpActionSettings
from sidecar.shutdown.coordinator import Coordinator
from sidecar.shutdown.prepare import Preparation

TOKEN = "s3cret-token-for-tests"


class Step:
    """An announce or an action whose outcomes are scripted; it can be held until let go."""

    def __init__(self, name: str, outcomes: list[bool]) -> None:
        self.name = name
        self.outcomes = outcomes
        self.calls = 0
        self.hold: asyncio.Event | None = None

    async def run(self, deadline: float) -> Any:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        ok = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if self.name == "announce":
            return Result(Outcome.OK if ok else Outcome.ERROR, {"registries": {}})
        if not ok:
            raise AdapterError(f"{self.name}: HTTP 503")
        return None


async def test_a_step_that_succeeded_is_not_run_again_and_a_failed_one_is() -> None:
    announce, action = Step("announce", [True]), Step("leader-transfer", [False, True])
    preparation = Preparation(announce, action)
    first = await preparation.prepare()
    assert first.prepared is False
    assert first.steps["announce"]["outcome"] == "ok"
    assert first.steps["action"]["outcome"] == "error"
    assert "HTTP 503" in first.steps["action"]["error"]
    second = await preparation.prepare()
    assert second.prepared is True
    third = await preparation.prepare()
    assert third.document() == {"prepared": True, "steps": third.steps}
    # announce ran once; the action until it worked; nothing after that.
    assert (announce.calls, action.calls, preparation.attempts) == (1, 2, 2)


async def test_a_slow_step_is_answered_not_yet_and_goes_on_after_the_answer() -> None:
    announce = Step("announce", [True])
    announce.hold = asyncio.Event()
    preparation = Preparation(announce, answer_within_seconds=0.05)
    answered = await preparation.prepare()
    assert answered.prepared is False
    assert answered.steps["announce"] == {"outcome": "in_progress"}
    # A second caller joins the same attempt instead of starting another.
    again = asyncio.create_task(preparation.prepare())
    announce.hold.set()
    assert (await again).prepared is True
    assert (announce.calls, preparation.attempts) == (1, 1)
    await preparation.close()


async def test_nothing_configured_is_prepared_at_once_and_close_cancels_an_attempt() -> None:
    assert (await Preparation(None).prepare()).steps == {
        "announce": {"outcome": "skipped", "reason": "not configured"},
        "action": {"outcome": "skipped", "reason": "not configured"},
    }
    stuck = Step("announce", [True])
    stuck.hold = asyncio.Event()
    preparation = Preparation(stuck, answer_within_seconds=0.01)
    assert (await preparation.prepare()).prepared is False
    await preparation.close()
    assert preparation.prepared is False


class Registry:
    """A generic HTTP registry: records every call; mark-down answers `status`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path_qs))
        return web.Response(status=self.status)


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Registry, str]]:
    fake = Registry()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def agent_settings(registry_url: str, token: str = TOKEN) -> Any:
    """An agent with one generic HTTP registry (one try per step) and a hook token."""
    instance = f"{registry_url}/apps/WEB/{{pod.name}}"
    return from_mapping(
        {
            "containers": [{"name": "app", "ports": [free_port()]}],
            "server": {"host": "127.0.0.1", "port": free_port(), "token": token},
            "pod": {"name": "web-1", "namespace": "shop", "ips": ["127.0.0.1"]},
            "kubernetes": {"enabled": False},
            "registry_retry": {"attempts": 1},
            "registries": [
                {
                    "kind": "http",
                    "name": "eureka",
                    "mark_down": {"method": "PUT", "url": f"{instance}/status?value=DOWN"},
                    "deregister": {"method": "DELETE", "url": instance},
                    "verify": {"url": instance},
                }
            ],
        },
        {},
    )


async def test_over_http_the_token_comes_first_then_announce_runs_once_and_no_hook_moves(
    registry: tuple[Registry, str],
) -> None:
    fake, url = registry
    settings = agent_settings(url)
    agent = await start_agent(settings)
    endpoint = f"http://127.0.0.1:{settings.server.port}/prepare"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            for headers in ({}, {"X-Shutdown-Token": "wrong"}):
                async with session.post(endpoint, headers=headers) as answer:
                    assert answer.status == 403
            assert fake.calls == []  # nothing was done without the token
            fake.status = 503
            good = {"X-Shutdown-Token": TOKEN}
            async with session.post(endpoint, headers=good) as answer:
                assert answer.status == 200
                body = await answer.json()
            assert body["prepared"] is False
            assert body["steps"]["announce"]["outcome"] == "error"
            fake.status = 200
            for _ in range(2):
                async with session.post(endpoint, headers=good) as answer:
                    body = await answer.json()
                assert body["prepared"] is True
                assert body["steps"]["announce"]["registries"]["eureka"]["outcome"] == (
                    "marked_down"
                )
            async with session.get(endpoint) as answer:
                assert answer.status == 405
        # Two tries of the mark-down (the failed one, the good one); nothing else, ever.
        assert fake.calls == [("PUT", "/apps/WEB/web-1/status?value=DOWN")] * 2
        status = agent.coordinator.status()
        assert not status.started
        assert status.releases == ()
    finally:
        await stop_agent(agent)


async def test_the_preparation_action_is_a_templated_http_action_through_the_coordinator(
    registry: tuple[Registry, str],
) -> None:
    """The wiring the runtime will do once the settings have the key: a rendered HttpAction."""
    fake, url = registry
    settings = agent_settings(url)
    http = HttpClient()
    rendered = render_action(
        HttpActionSettings(url=f"{url}/leaders/{{pod.name}}/transfer", name="leader-transfer"),
        identity_of(settings.pod),
        "prepare",
    )
    coordinator = Coordinator(
        settings,
        traffic=NoTraffic(),
        processes=NoProcesses(),
        prepare_action=HttpAction(rendered, http),
    )
    metrics = Metrics()
    runner = await start_server(settings, coordinator, metrics, flush_seconds=0.1)
    endpoint = f"http://127.0.0.1:{settings.server.port}/prepare"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            fake.status = 409  # the store says: not now
            async with session.post(endpoint, headers={"X-Shutdown-Token": TOKEN}) as answer:
                body = await answer.json()
            assert body["prepared"] is False
            assert "HTTP 409" in body["steps"]["action"]["error"]
            assert body["steps"]["announce"]["outcome"] == "skipped"
            fake.status = 200
            async with session.post(endpoint, headers={"X-Shutdown-Token": TOKEN}) as answer:
                body = await answer.json()
            assert body == {
                "prepared": True,
                "steps": {
                    "announce": {"outcome": "skipped", "reason": "not configured"},
                    "action": {"outcome": "ok", "name": "leader-transfer"},
                },
            }
        assert fake.calls == [("POST", "/leaders/web-1/transfer")] * 2
    finally:
        await runner.cleanup()
        await coordinator.close()
        await http.close()


class NoTraffic:
    async def sample(self) -> TrafficSample:
        raise AssertionError("preparing never samples traffic")


class NoProcesses:
    async def running(self, names: frozenset[str]) -> bool | None:
        raise AssertionError("preparing never looks at processes")
