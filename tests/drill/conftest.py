"""Fixtures of the API stand-in's tests: a started ControlPlane and an HTTP session to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sidecar.drill.control_plane import ControlPlane
from tests.drill.control_plane_client import OPEN


@pytest.fixture
async def cp(request: pytest.FixtureRequest) -> AsyncIterator[ControlPlane]:
    settings = {"bookmark_interval_seconds": 0.2, **getattr(request, "param", {})}
    plane = ControlPlane(**settings)
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
async def http(cp: ControlPlane) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cp.url) as session:
        yield session
        while OPEN:
            OPEN.pop().close()
