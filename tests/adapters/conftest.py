"""Fixtures of the adapters' tests: a started fake registry server and an HTTP action client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar.adapters.http_action import HttpClient
from tests.adapters.registry_server import FakeRegistryServer


@pytest.fixture
async def registry_server() -> AsyncIterator[FakeRegistryServer]:
    server = FakeRegistryServer()
    server.instances["shop.web-1"] = "UP"
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.close()
