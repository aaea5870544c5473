"""Quitting Istio's pilot-agent: one POST /quitquitquit reaches it; a GET is refused."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sidecar.adapters.envoy import EnvoyAdmin
from sidecar.drill.procs import free_port
from tests.fakes.pilot_agent import FakePilotAgent


async def test_quit_reaches_pilot_agent_as_a_post_from_localhost() -> None:
    fake = FakePilotAgent()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    admin = EnvoyAdmin(
        f"http://127.0.0.1:{free_port()}", pilot_agent_url=f"http://127.0.0.1:{port}"
    )
    try:
        assert await admin.quit_pilot_agent() is True
        assert fake.quits == 1
        # The fake is faithful: a GET is refused, as pilot-agent does.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/quitquitquit") as r,
        ):
            assert r.status == 405
        assert fake.quits == 1
    finally:
        await admin.close()
        await runner.cleanup()
