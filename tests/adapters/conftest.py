"""Fixtures of the adapters' tests: the API stand-in with pods in it, a fake registry, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.adapters.http_action import HttpClient
from sidecar.drill.control_plane import ControlPlane
from tests.adapters.kube_pod import CONTROLLER_DELAY_SECONDS, Pod
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


@pytest.fixture
async def cp() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane()
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
async def make_pod(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Pod] = []

    def make(ips: tuple[str, ...] = ("10.1.0.7",), **kw: Any) -> Pod:
        pod = Pod(cp, tmp_path, ips, **kw)
        # The slices are written at once for the setup; the deletion then takes a while (D10).
        cp.controller_delay_seconds = CONTROLLER_DELAY_SECONDS
        made.append(pod)
        return pod

    yield make
    for pod in made:
        await pod.api.close()
