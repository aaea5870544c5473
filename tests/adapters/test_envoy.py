"""The Envoy admin adapter against the real Envoy: inbound drain, counts, quit, errors named."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from sidecar.adapters.envoy import EnvoyAdmin
from sidecar.drill.procs import Proc, free_port, start_app, start_envoy
from sidecar.errors import AdapterError

pytestmark = pytest.mark.envoy


@dataclass
class Pod:
    envoy: Proc
    admin: EnvoyAdmin
    url: str


@pytest.fixture
async def pod(tmp_path: Path) -> AsyncIterator[Pod]:
    app_port, listen_port, admin_port = free_port(), free_port(), free_port()
    app = await start_app(tmp_path, name="app", host="127.0.0.1", port=app_port, latency_ms=(1, 2))
    envoy = await start_envoy(
        tmp_path,
        name="envoy",
        host="127.0.0.1",
        listen_port=listen_port,
        admin_port=admin_port,
        app_port=app_port,
    )
    admin = EnvoyAdmin(f"http://127.0.0.1:{admin_port}")
    try:
        yield Pod(envoy, admin, f"http://127.0.0.1:{listen_port}/")
    finally:
        await admin.close()
        await envoy.stop()
        await app.stop()


async def test_inbound_drain_closes_connections_after_their_next_answer_and_keeps_accepting(
    pod: Pod,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(pod.url) as before:
            assert before.status == 200
            assert before.headers.get("Connection", "").lower() != "close"
        await pod.admin.drain_inbound()
        async with session.get(pod.url) as during:
            assert during.status == 200
            assert during.headers.get("Connection", "").lower() == "close"
        # A lagging data plane may still open new connections: they are served, then closed.
        async with aiohttp.ClientSession() as fresh, fresh.get(pod.url) as late:
            assert late.status == 200
    info = await pod.admin.server_info()
    assert info["state"] == "LIVE"  # /drain_listeners does not change the server state
    assert info["command_line_options"]["drain_strategy"] == "Immediate"


async def test_active_connections_counts_an_open_keep_alive_connection(pod: Pod) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(pod.url) as response:
            await response.read()
        counts = await pod.admin.active_connections()
    port = pod.url.rsplit(":", 1)[1].strip("/")
    assert counts == {f"127.0.0.1_{port}": 1}  # per listener address; no admin or worker lines


async def test_quit_ends_the_envoy_process(pod: Pod) -> None:
    await pod.admin.quit()
    assert await pod.envoy.exited(5.0) == 0


async def test_an_unreachable_admin_api_is_an_adapter_error_not_a_hang() -> None:
    host = f"127.0.0.1:{free_port()}"
    admin = EnvoyAdmin(f"http://{host}", timeout_seconds=0.5)
    # The message names the call (method, URL, flags) and why nothing answered.
    drain = re.escape(f"POST http://{host}/drain_listeners?inboundonly&graceful&skip_exit: ")
    refused = re.escape(f"ClientConnectorError: Cannot connect to host {host}")
    with pytest.raises(AdapterError, match=f"^{drain}{refused}"):
        await admin.drain_inbound()
    assert await admin.quit_pilot_agent() is False
    await admin.close()


async def test_an_answer_other_than_200_is_an_adapter_error_with_its_status(pod: Pod) -> None:
    admin = EnvoyAdmin(pod.url)  # the listener, not the admin: the app answers 404
    call = re.escape(f"GET {pod.url}server_info: HTTP 404: ")
    with pytest.raises(AdapterError, match=f"^{call}"):
        await admin.server_info()
    await admin.close()
