"""The agent's HTTP surface: /prestop/{container}, /prepare, the probes, /status, /metrics."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from sidecar.agent.guard import ConnectionGuard, GuardedRunner, carries_token

if TYPE_CHECKING:
    from aiohttp.http_parser import RawRequestMessage

    from sidecar.agent.metrics import Metrics
    from sidecar.model.flight import FlightStatus
    from sidecar.settings import Settings
    from sidecar.shutdown.coordinator import Coordinator

log = structlog.get_logger(__name__)


class Hooks:
    """Request handlers; all state lives in the coordinator, read through its status snapshot."""

    def __init__(self, settings: Settings, coordinator: Coordinator, metrics: Metrics) -> None:
        self._settings = settings
        self._coordinator = coordinator
        self._metrics = metrics
        token = settings.server.token
        self._token = token.encode() if token else None

    def authorised(self, raw_headers: tuple[tuple[bytes, bytes], ...]) -> bool:
        """Whether these headers may hold a hook; compared as raw bytes, so no byte can fail."""
        if self._token is None:
            return self._settings.server.allow_unauthenticated
        return carries_token(raw_headers, self._token)

    def trusts(self, message: RawRequestMessage) -> bool:
        """Whether a request head makes its connection one of the kubelet's (an authorised hook)."""
        return message.url.path.startswith("/prestop/") and self.authorised(message.raw_headers)

    async def prestop(self, request: web.Request) -> web.Response:
        """Hold the hook until this container's turn; the kubelet ignores the status code."""
        container = request.match_info["container"]
        peer = request.remote
        # The token comes first, so that a caller without it learns nothing, not even names.
        if not self.authorised(request.raw_headers):
            self._coordinator.reject_hook("token")
            log.warning(
                "prestop_rejected", reason="bad or missing token", container=container, peer=peer
            )
            return web.json_response({"error": "forbidden: missing or wrong token"}, status=403)
        if not self._coordinator.knows(container):
            self._coordinator.reject_hook("unknown_container")
            known = [c.name for c in self._settings.containers]
            log.warning(
                "prestop_rejected", reason="unknown container", container=container, known=known
            )
            return web.json_response(
                {"error": f"unknown container {container!r}", "known": known}, status=404
            )
        already = self._coordinator.is_released(container)
        log.info("prestop_received", container=container, peer=peer, already_released=already)
        loop = asyncio.get_running_loop()
        received = loop.time()
        # A caller hanging up cancels only this wait, never the shutdown.
        await self._coordinator.hook(container)
        return web.json_response(
            {
                "container": container,
                "released": True,
                "waited_seconds": round(loop.time() - received, 3),
            }
        )

    async def prepare(self, request: web.Request) -> web.Response:
        """Prepare for a deletion (the deletion webhook asks); idempotent, bounded per call."""
        if not self.authorised(request.raw_headers):
            log.warning("prepare_rejected", reason="bad or missing token", peer=request.remote)
            return web.json_response({"error": "forbidden: missing or wrong token"}, status=403)
        prepared = await self._coordinator.prepare()
        log.info("prepare_answered", peer=request.remote, prepared=prepared.prepared)
        return web.json_response(prepared.document())

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive while the process serves."""
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready once serving; stays ready during a shutdown, which is when hooks arrive."""
        return web.Response(text="ready\n")

    async def status(self, _: web.Request) -> web.Response:
        """Phase, per-container state, timeline and budget, as JSON."""
        return web.json_response(status_document(self._settings, self._coordinator.status()))

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus exposition."""
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")


def status_document(settings: Settings, status: FlightStatus) -> dict[str, Any]:
    """What /status shows; times are seconds since the first hook, plus the wall time it came."""
    now = asyncio.get_running_loop().time()
    budget = status.budget
    released = {r.container: r for r in status.releases}
    start = budget.started_at if budget is not None else now
    doc: dict[str, Any] = {
        "phase": status.stage,
        "kind": status.kind,
        "containers": {
            c.name: {
                "role": c.role,
                "hooks_received": status.hooks.received.get(c.name, 0),
                "state": "released" if c.name in released else "waiting",
                **(
                    {
                        "released_at_seconds": round(released[c.name].at - start, 3),
                        "reason": released[c.name].reason,
                    }
                    if c.name in released
                    else {}
                ),
            }
            for c in settings.containers
        },
        "hooks": {"held": status.hooks.held, "rejected": dict(status.hooks.rejected)},
        "timeline": [
            {
                "phase": r.label,
                "outcome": str(r.outcome),
                "started_seconds": round(r.started_at - start, 3),
                "duration_seconds": round(r.duration, 3),
                "detail": r.detail,
            }
            for r in status.records
        ],
        "traffic": dict(status.traffic),
    }
    if budget is not None:
        doc["budget"] = {
            "started_at": time.time() - (now - budget.started_at),
            "grace_seconds": budget.grace_seconds,
            "remaining_seconds": round(budget.remaining(now), 3),
            "release_by_seconds": [round(t - start, 3) for t in budget.release_by],
        }
    if status.summary is not None:
        doc["summary"] = dict(status.summary)
    return doc


def build_app(settings: Settings, coordinator: Coordinator, metrics: Metrics) -> web.Application:
    """The aiohttp application with every route."""
    return _routes(Hooks(settings, coordinator, metrics))


def _routes(hooks: Hooks) -> web.Application:
    app = web.Application()
    app.router.add_route("GET", "/prestop/{container}", hooks.prestop)
    app.router.add_route("POST", "/prestop/{container}", hooks.prestop)
    app.router.add_post("/prepare", hooks.prepare)
    app.router.add_get("/healthz", hooks.healthz)
    app.router.add_get("/readyz", hooks.readyz)
    app.router.add_get("/status", hooks.status)
    app.router.add_get("/metrics", hooks.metrics)
    return app


async def start_server(
    settings: Settings, coordinator: Coordinator, metrics: Metrics, *, flush_seconds: float
) -> web.AppRunner:
    """Serve on the configured address; held hooks get `flush_seconds` to finish at cleanup.

    Connections are guarded (sidecar.agent.guard): request heads have a deadline and tokenless
    connections are capped, while the kubelet's held hooks are never cut.
    """
    hooks = Hooks(settings, coordinator, metrics)
    runner = GuardedRunner(
        _routes(hooks),
        ConnectionGuard(hooks.trusts),
        handle_signals=False,
        shutdown_timeout=flush_seconds,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host or None, settings.server.port)
    await site.start()
    return runner
