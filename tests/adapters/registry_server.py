"""A registry server for the HTTP registry's tests, as Eureka: a deregister may not stick."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.adapters.http_action import HttpClient
from sidecar.adapters.registries.http import HttpRegistry
from sidecar.model.http_action import Identity
from sidecar.settings.registries import (
    HeaderSettings,
    HttpActionSettings,
    HttpRegistrySettings,
    HttpVerifySettings,
)

POD = Identity(name="web-1", namespace="shop", uid="u-1", ips=("10.0.0.7",))


class FakeRegistryServer:
    """Instances by id; a deregister may not stick (a live app re-registers), as in Eureka."""

    def __init__(self) -> None:
        self.instances: dict[str, str] = {}
        #: Deregister answers 200 but the entry stays.
        self.sticky = False
        self.force_fails = False
        #: The next this many deregisters answer 503.
        self.unavailable = 0
        self.hang = False
        self.hang_started = asyncio.Event()
        self.log: list[str] = []
        self.tokens: list[str | None] = []
        app = web.Application()
        app.router.add_put("/apps/{id}/status", self.mark_down)
        app.router.add_delete("/apps/{id}", self.deregister)
        app.router.add_get("/apps/{id}", self.read)
        app.router.add_delete("/admin/apps/{id}", self.force)
        self.server = TestServer(app, host="127.0.0.1")

    async def _enter(self, request: web.Request, what: str) -> str:
        self.log.append(what)
        self.tokens.append(request.headers.get("X-Registry-Token"))
        if self.hang:
            self.hang_started.set()
            await asyncio.Event().wait()
        return request.match_info["id"]

    async def mark_down(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "mark_down")
        if key not in self.instances:
            return web.Response(status=404)
        self.instances[key] = request.query["value"]
        return web.Response()

    async def deregister(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "deregister")
        if self.unavailable:
            self.unavailable -= 1
            return web.Response(status=503, text="registry busy")
        if key not in self.instances:
            return web.Response(status=404)
        if not self.sticky:
            del self.instances[key]
        return web.Response()

    async def read(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "read")
        if key not in self.instances:
            return web.Response(status=404)
        return web.json_response({"id": key, "status": self.instances[key]})

    async def force(self, request: web.Request) -> web.Response:
        key = await self._enter(request, "force")
        if self.force_fails:
            return web.Response(status=500, text="admin API failed")
        self.instances.pop(key, None)
        return web.Response()

    def base(self) -> str:
        return str(self.server.make_url("/"))


def registry_settings(
    base: str, *, force: bool = True, headers: tuple[HeaderSettings, ...] = ()
) -> HttpRegistrySettings:
    instance = base + "apps/{pod.namespace}.{pod.name}"
    return HttpRegistrySettings(
        name="eureka-like",
        mark_down=HttpActionSettings(
            url=instance + "/status?value=OUT_OF_SERVICE", method="PUT", headers=headers
        ),
        deregister=HttpActionSettings(url=instance, method="DELETE", headers=headers),
        verify=HttpVerifySettings(url=instance, headers=headers),
        force_remove=HttpActionSettings(
            url=base + "admin/apps/{pod.namespace}.{pod.name}" if force else "",
            method="DELETE",
            headers=headers,
        ),
    )


def registry_of(
    server: FakeRegistryServer, client: HttpClient, *, force: bool = True
) -> HttpRegistry:
    return HttpRegistry(registry_settings(server.base(), force=force), POD, client)


def deadline_in(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds
