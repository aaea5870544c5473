"""Who may hold a connection to the agent: a deadline for request heads, a cap on tokenless ones.

The agent listens on the pod IP, so anyone who reaches the pod can connect. A connection is
*untrusted* until a request on it is an authorised hook; untrusted connections must complete a
request head within `HEADER_TIMEOUT_SECONDS` and at most `MAX_UNTRUSTED_CONNECTIONS` of them are
kept (the oldest is closed for a new one). Trusted connections, the kubelet's held hooks, are
never cut here. The limits are module constants, not settings: they protect the agent, and no
pod needs other values (docs/http-api.md says why each one).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.web_protocol import RequestHandler

from sidecar.settings import TOKEN_HEADER

log = structlog.get_logger(__name__)

_TOKEN_HEADER = TOKEN_HEADER.lower().encode()

#: A request head (request line and headers) must arrive within this time of the connection
#: opening, and an idle keep-alive connection is closed after it. The kubelet sends its whole
#: hook request in one write right after connecting; 5 s is ample on a loaded node and keeps a
#: slowloris connection short-lived.
HEADER_TIMEOUT_SECONDS = 5.0
#: Connections that have not carried an authorised hook, kept at most; a new one closes the
#: oldest. Far above what a pod sees (probes, a scraper, hooks before their head arrives) and far
#: below the smallest open-file limit (1024), so accepting never fails for lack of descriptors.
MAX_UNTRUSTED_CONNECTIONS = 256
#: The request line (method, path, version): hook paths are short.
MAX_LINE_BYTES = 2048
#: One header name or value: the token is at most a few hundred bytes.
MAX_FIELD_BYTES = 2048
#: Headers per request: the kubelet sends about six, curl about four.
MAX_HEADERS = 32
# So an untrusted connection makes the agent buffer at most its head, about 130 KiB
# (line + headers x (name + value)); a body goes through aiohttp's read buffer, which pauses
# reading when full.


def carries_token(raw_headers: tuple[tuple[bytes, bytes], ...], token: bytes) -> bool:
    """Whether the first token header is `token`; raw bytes, so any byte is a wrong token."""
    given = next((v for k, v in raw_headers if k.lower() == _TOKEN_HEADER), b"")
    return hmac.compare_digest(given, token)


class ConnectionGuard:
    """Tracks untrusted connections: one deadline timer each until its first head, and the cap.

    No timer exists while no connection is waiting for its head, so an idle agent pays nothing.
    Shedding is logged once per episode (`connections_shed` when the last untrusted connection
    is gone), not once per connection, so a flood cannot flood the log.
    """

    def __init__(self, trusts: Callable[[RawRequestMessage], bool]) -> None:
        self._trusts = trusts
        # Oldest first; the timer is set until the connection's first request head arrives.
        self._untrusted: dict[RequestHandler, asyncio.TimerHandle | None] = {}
        self._shed: Counter[str] = Counter()

    @property
    def untrusted(self) -> int:
        """How many untrusted connections are open."""
        return len(self._untrusted)

    def opened(self, connection: RequestHandler) -> None:
        """A new connection: untrusted, with a deadline for its head; the oldest goes if over."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(HEADER_TIMEOUT_SECONDS, self._head_late, connection)
        self._untrusted[connection] = timer
        if len(self._untrusted) > MAX_UNTRUSTED_CONNECTIONS:
            self._drop(next(iter(self._untrusted)), "limit")

    def head(self, message: RawRequestMessage, connection: RequestHandler) -> None:
        """A request head arrived: no deadline any more; trusted if it is an authorised hook."""
        if connection not in self._untrusted:
            return
        timer = self._untrusted[connection]
        if timer is not None:
            timer.cancel()
            self._untrusted[connection] = None
        if self._trusts(message):
            del self._untrusted[connection]
            self._settled()

    def closed(self, connection: RequestHandler) -> None:
        """The connection is gone, for whatever reason."""
        timer = self._untrusted.pop(connection, None)
        if timer is not None:
            timer.cancel()
        self._settled()

    def _head_late(self, connection: RequestHandler) -> None:
        if self._untrusted.get(connection) is not None:
            self._drop(connection, "header_timeout")

    def _drop(self, connection: RequestHandler, reason: str) -> None:
        timer = self._untrusted.pop(connection)
        if timer is not None:
            timer.cancel()
        if not self._shed:
            log.warning("connections_shedding", reason=reason, untrusted=len(self._untrusted))
        self._shed[reason] += 1
        connection.force_close()

    def _settled(self) -> None:
        if self._shed and not self._untrusted:
            log.info("connections_shed", **self._shed)
            self._shed.clear()


class GuardedServer(web.Server):
    """aiohttp's low-level server, telling the guard of every connection and request head."""

    def __init__(self, handler: Any, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._guard = guard
        make_request = self.request_factory

        def request_factory(message: Any, payload: Any, protocol: Any, *rest: Any) -> Any:
            guard.head(message, protocol)
            return make_request(message, payload, protocol, *rest)

        self.request_factory = request_factory

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Counted by aiohttp, then by the guard (which may close the oldest untrusted one)."""
        super().connection_made(handler, transport)
        self._guard.opened(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        """Forgotten by aiohttp and by the guard."""
        super().connection_lost(handler, exc)
        self._guard.closed(handler)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a GuardedServer with the limits above, and no access log."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        self._handler_kwargs: dict[str, Any] = {
            "access_log": None,
            "keepalive_timeout": HEADER_TIMEOUT_SECONDS,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            "max_headers": MAX_HEADERS,
            "logger": _request_errors,
        }
        super().__init__(app, **kwargs, **self._handler_kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        # The app's own server runs its startup and freezes it; ours takes its handler over.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            guard=self.guard,
            request_factory=plain.request_factory,
            loop=asyncio.get_running_loop(),
            **self._handler_kwargs,
        )


class _MalformedRequestsQuiet(logging.Filter):
    """A malformed request from the network is one warning line, not an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            summary = f"{type(exc).__name__}: {exc.code} {exc.message!r:.200}"
            record.msg, record.args = f"{record.getMessage()}: {summary}", ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


#: aiohttp's per-connection logger for errors in requests (the default is `aiohttp.server`).
_request_errors = logging.getLogger("sidecar.agent.http")
_request_errors.addFilter(_MalformedRequestsQuiet())
