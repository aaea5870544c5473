"""Istio pilot-agent's status server, the part the coordinator calls (envoy-behaviour EV8).

`POST /quitquitquit` answers 200 and makes the agent exit; other methods get 405; callers not
on localhost get 403 (pilot/cmd/pilot-agent/status/server.go handleQuit).
"""

from __future__ import annotations

import ipaddress

from aiohttp import web


class FakePilotAgent:
    """Records quit requests instead of exiting."""

    def __init__(self) -> None:
        self.quits = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/quitquitquit", self._quit)

    async def _quit(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="Method not allowed\n")
        if not ipaddress.ip_address(request.remote or "0.0.0.0").is_loopback:
            return web.Response(status=403, text="Only requests from localhost are allowed\n")
        self.quits += 1
        return web.Response(text="OK\n")
