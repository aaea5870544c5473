"""Pins the HTTP registry's retire over loopback HTTP: removed, absent, forced, retried or cut."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.adapters.http_action import HttpClient
from sidecar.model.report import Outcome
from sidecar.settings.registries import RetrySettings
from sidecar.shutdown.registries import Retire
from tests.adapters.registry_server import FakeRegistryServer, deadline_in, registry_of


async def test_deregister_then_an_absent_read_back_is_removed(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    result = await Retire([registry_of(registry_server, client)]).run(deadline_in())
    assert registry_server.log == ["deregister", "read"]
    assert registry_server.instances == {}
    assert result.outcome is Outcome.OK
    assert result.detail["registries"]["eureka-like"]["outcome"] == "removed"


async def test_an_entry_absent_from_the_start_is_already_absent(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.instances.clear()
    result = await Retire([registry_of(registry_server, client)]).run(deadline_in())
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["deregister"], entry["outcome"]) == ("gone", "already_absent")


async def test_a_removal_that_does_not_stick_is_forced_through_the_admin_api(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = True
    result = await Retire([registry_of(registry_server, client)]).run(deadline_in())
    assert registry_server.log == ["deregister", "read", "force", "read"]
    assert registry_server.instances == {}
    assert result.detail["registries"]["eureka-like"]["outcome"] == "forced"
    assert result.outcome is Outcome.OK


async def test_when_forcing_fails_the_entry_is_reported_still_present(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = registry_server.force_fails = True
    retire = Retire([registry_of(registry_server, client)], backoff=RetrySettings(attempts=2))
    result = await retire.run(deadline_in())
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["force"], entry["read_again"], entry["outcome"]) == (
        "failed",
        "present",
        "still_present",
    )
    assert "HTTP 500, expected 200, 201, 202, 204: admin API failed" in entry["error"]
    assert result.outcome is Outcome.ERROR


async def test_without_a_force_action_a_lingering_entry_is_still_present(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.sticky = True
    registry = registry_of(registry_server, client, force=False)
    assert not registry.can_force
    result = await Retire([registry]).run(deadline_in())
    assert registry_server.log == ["deregister", "read"]
    assert result.detail["registries"]["eureka-like"]["outcome"] == "still_present"


async def test_a_busy_registry_is_retried_until_it_answers(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.unavailable = 2
    result = await Retire([registry_of(registry_server, client)]).run(deadline_in())
    assert registry_server.log == ["deregister"] * 3 + ["read"]
    entry = result.detail["registries"]["eureka-like"]
    assert (entry["outcome"], entry["attempts"]) == ("removed", 4)


async def test_a_hanging_registry_is_cut_at_the_deadline(
    registry_server: FakeRegistryServer, client: HttpClient
) -> None:
    registry_server.hang = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.4
    result = await Retire([registry_of(registry_server, client)]).run(deadline)
    assert registry_server.hang_started.is_set()
    assert loop.time() == pytest.approx(deadline, abs=0.15)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.detail["registries"]["eureka-like"]["timed_out"] is True
