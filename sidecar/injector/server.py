"""The webhook's HTTP surface over TLS: /mutate, /validate-delete, probes; bounded size and time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from sidecar.injector import review

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sidecar.injector.guarantee import Guarantee
    from sidecar.injector.tls import ServingCertificate

    #: The planner as the webhook calls it: the pod object and the review's namespace. It may
    #: ask the API server (the namespace's token Secret), hence a coroutine.
    Planner = Callable[..., Awaitable[review.Planned]]

log = structlog.get_logger(__name__)

#: The path the MutatingWebhookConfiguration names.
MUTATE_PATH = "/mutate"
#: The path the guarantee component's ValidatingWebhookConfiguration names.
VALIDATE_DELETE_PATH = "/validate-delete"
#: A review carries one Pod, and the API server refuses objects above about 1.5 MiB (etcd's
#: request limit); twice that leaves room for the review around it. Larger bodies get 413 unread.
BODY_MAX_BYTES = 3 * 1024 * 1024
#: Reading the body and answering; the API server gives up after the configuration's
#: `timeoutSeconds` (10 at most in manifests/), so a later answer has nobody to read it.
REQUEST_TIMEOUT_SECONDS = 10.0
#: Planning one pod, lookups included; below the manifests' `timeoutSeconds` (5), so that the
#: API server gets an answer (the pod unchanged, with a warning) rather than a timeout.
PLAN_TIMEOUT_SECONDS = 3.0
#: A TLS handshake must finish within this; the API server's takes milliseconds.
HANDSHAKE_TIMEOUT_SECONDS = 5.0
#: Idle keep-alive connections are kept longer than the API server's own idle timeout (90 s,
#: Go's default transport), so the client closes first: a server closing an idle connection
#: races the client's next POST on it, which the client does not retry.
KEEPALIVE_SECONDS = 120.0
#: At shutdown, reviews already being answered get this long before they are cancelled.
IN_FLIGHT_SECONDS = 10.0
#: Then what still runs is cancelled; aiohttp waits this long for it (0 would mean forever).
CUT_SECONDS = 1.0


class Reviews:
    """Request handlers: one planner call per pod CREATE, the deletion guard, and the probes."""

    def __init__(self, plan: Planner, guarantee: Guarantee | None = None) -> None:
        self._plan = plan
        self._guarantee = guarantee
        self.ready = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def idle(self) -> None:
        """Return once no review is being read or answered."""
        await self._idle.wait()

    async def mutate(self, request: web.Request) -> web.Response:
        """Answer one AdmissionReview; every outcome is an answer, never a 500."""
        return await self._counted(request, self._mutate)

    async def validate_delete(self, request: web.Request) -> web.Response:
        """Answer one pod DELETE review: refused until the agent prepared (docs/guarantee.md)."""
        return await self._counted(request, self._validate_delete)

    async def _counted(
        self,
        request: web.Request,
        answer: Callable[[bytes], Awaitable[tuple[review.Answer, str, str]]],
    ) -> web.Response:
        """Read the body (bounded), answer it, log one line; counted for the shutdown's wait."""
        self.in_flight += 1
        self._idle.clear()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    body = await request.read()
            except TimeoutError:
                log.warning("review_timeout", peer=request.remote, seconds=REQUEST_TIMEOUT_SECONDS)
                return web.json_response({"error": "the body did not arrive in time"}, status=408)
            except ConnectionError:  # the caller hung up mid-body: nobody to answer
                log.info("review_abandoned", peer=request.remote)
                return web.json_response({"error": "the connection was lost"}, status=400)
            answered, namespace, pod = await answer(body)
            status = answered.review["response"].get("status", {}).get("message")
            log.info(
                "review_answered",
                path=request.path,
                uid=answered.review["response"]["uid"][:64],
                namespace=namespace,
                pod=pod,
                outcome=answered.outcome,
                **({"error": status} if status else {}),
                milliseconds=round((loop.time() - started) * 1000, 2),
            )
            return web.Response(
                body=answered.body(), status=answered.status, content_type="application/json"
            )
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _mutate(self, body: bytes) -> tuple[review.Answer, str, str]:
        parsed = review.parse(body)
        if isinstance(parsed, review.Answer):
            return parsed, "", ""
        return await self._answer(parsed), parsed.namespace, parsed.pod_name

    async def _validate_delete(self, body: bytes) -> tuple[review.Answer, str, str]:
        parsed = review.parse_delete(body)
        if isinstance(parsed, review.Answer):
            return parsed, "", ""
        if self._guarantee is None:  # not configured: the deletion is never held here
            return review.allow(parsed.uid, "not_configured"), parsed.namespace, parsed.name
        try:
            async with asyncio.timeout(PLAN_TIMEOUT_SECONDS):
                answered = await self._guarantee.answer(parsed)
        except TimeoutError:
            warning = f"not guarded: no decision within {PLAN_TIMEOUT_SECONDS:g} s"
            answered = review.allow(parsed.uid, "failed", [warning])
        except Exception as e:  # a bug must not hold deletions: allowed, as failurePolicy Ignore
            log.exception("review_guard_failed", uid=parsed.uid[:64], namespace=parsed.namespace)
            warning = f"not guarded: internal error ({type(e).__name__})"
            answered = review.allow(parsed.uid, "failed", [warning])
        return answered, parsed.namespace, parsed.name

    async def _answer(self, parsed: review.PodReview) -> review.Answer:
        try:
            async with asyncio.timeout(PLAN_TIMEOUT_SECONDS):
                planned = await self._plan(parsed.pod, parsed.namespace, dry_run=parsed.dry_run)
            return review.answer(parsed, planned)
        except TimeoutError:
            log.warning("review_plan_timeout", uid=parsed.uid[:64], namespace=parsed.namespace)
            return review.failed(parsed, f"no plan within {PLAN_TIMEOUT_SECONDS:g} s")
        except Exception as e:  # a planner bug must not fail pod creation
            log.exception("review_plan_failed", uid=parsed.uid[:64], namespace=parsed.namespace)
            return review.failed(parsed, f"internal error ({type(e).__name__})")

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive while the process serves."""
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready from start until shutdown begins; then 503, so the Service stops sending."""
        if not self.ready:
            return web.Response(text="shutting down\n", status=503)
        return web.Response(text="ready\n")


def build_app(reviews: Reviews) -> web.Application:
    """The aiohttp application with every route and the body limit."""
    app = web.Application(client_max_size=BODY_MAX_BYTES)
    app.router.add_post(MUTATE_PATH, reviews.mutate)
    app.router.add_post(VALIDATE_DELETE_PATH, reviews.validate_delete)
    app.router.add_get("/healthz", reviews.healthz)
    app.router.add_get("/readyz", reviews.readyz)
    return app


class _TLSSite(web.TCPSite):
    """A TCPSite whose TLS handshakes and closes are bounded (aiohttp leaves asyncio's 60 s)."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        self._server = await asyncio.get_running_loop().create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
            ssl_shutdown_timeout=HANDSHAKE_TIMEOUT_SECONDS,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


class Webhook:
    """The webhook server: `app` can be extended until `start`, which listens over TLS."""

    def __init__(
        self,
        plan: Planner,
        certificate: ServingCertificate,
        *,
        host: str = "",
        port: int = 8443,
        guarantee: Guarantee | None = None,
    ) -> None:
        self._guarantee = guarantee
        self.reviews = Reviews(plan, guarantee)
        self.app = build_app(self.reviews)
        self.certificate = certificate
        self._host = host or None
        self._port = port
        self._runner: web.AppRunner | None = None
        self._site: _TLSSite | None = None
        #: Set once listening, and ready.
        self.serving = asyncio.Event()
        #: Set once unready: a shutdown has begun.
        self.stopping = asyncio.Event()
        #: Set once the listener is closed and reviews in flight are being waited for.
        self.draining = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (the asked one until started)."""
        return self._site.port if self._site is not None else self._port

    async def start(self) -> None:
        """Listen; ready at once."""
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # Reviews in flight had their time in stop(); what is left is cut.
            shutdown_timeout=CUT_SECONDS,
        )
        await runner.setup()
        self._runner = runner
        self._site = _TLSSite(runner, self._host, self._port, ssl_context=self.certificate.context)
        await self._site.start()
        self.reviews.ready = True
        self.serving.set()
        log.info("injector_ready", port=self.port, path=MUTATE_PATH)

    def unready(self) -> None:
        """The first step of a shutdown: /readyz fails, reviews are still answered."""
        self.reviews.ready = False
        self.stopping.set()

    async def stop(self) -> None:
        """Stop listening, let reviews in flight finish (IN_FLIGHT_SECONDS at most), close."""
        # 1. Unready, in case a probe comes before the process is gone.
        self.unready()
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        # 2. Close the listener: new connections are refused, open ones still carry reviews.
        if self._site is not None:
            await self._site.stop()
        self.draining.set()
        # 3. Wait for reviews in flight, bodies still arriving included: aiohttp's own shutdown
        #    drops every byte that arrives after it begins, so it must not begin before this.
        try:
            async with asyncio.timeout(IN_FLIGHT_SECONDS):
                await self.reviews.idle()
        except TimeoutError:
            log.warning("reviews_cut", in_flight=self.reviews.in_flight, seconds=IN_FLIGHT_SECONDS)
        # 4. Close every connection; what is still running is cancelled at once.
        await runner.cleanup()
        # 5. Close the deletion guard's connections to agents.
        if self._guarantee is not None:
            await self._guarantee.close()
