"""Sends rendered HTTP actions with aiohttp: one session, every request bounded by the deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from sidecar.adapters.session import LazySession
from sidecar.errors import AdapterError, truncate
from sidecar.model.http_action import presence, render_action
from sidecar.model.registry import Presence

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sidecar.model.http_action import Action, Header, Identity, Request, Verify
    from sidecar.settings.registries import HttpActionSettings

#: At most this much of an answer is read: enough for a read-back's condition, bounded memory.
BODY_LIMIT_BYTES = 64 * 1024


class HttpClient:
    """The shared HTTP client of offline calls, config cleanup and the generic HTTP registry.

    Each request's timeout is its own `timeout_seconds`, cut to the time left before the deadline;
    headers from secret files are read at call time, so a rotated Secret is picked up. Every
    failure raises AdapterError naming the request, with the remote body truncated.
    """

    def __init__(self) -> None:
        self._http = LazySession()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    async def send(self, request: Request, deadline: float) -> tuple[int, str]:
        """Send `request`; its status and (the start of) its body."""
        what = f"{request.method} {request.url}"
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AdapterError(f"{what}: no time left before the deadline")
        headers = {h.name: _header_value(h) for h in request.headers}
        if request.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = request.content_type
        try:
            async with self._http.get().request(
                request.method,
                URL(request.url, encoded=True),
                data=request.body.encode() if request.body else None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=min(request.timeout_seconds, left)),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(BODY_LIMIT_BYTES)
                return response.status, body.decode("utf-8", "replace")
        except TimeoutError as e:
            raise AdapterError(
                f"{what}: no answer within {min(request.timeout_seconds, left):.3g} s"
            ) from e
        except aiohttp.ClientError as e:
            raise AdapterError(f"{what}: {type(e).__name__}: {e}") from e

    async def read(self, verify: Verify, deadline: float) -> Presence:
        """Send a read-back; what its answer says of the entry."""
        status, body = await self.send(verify.request, deadline)
        return presence(verify, status, body)

    async def run(self, action: Action, deadline: float) -> int:
        """Send `action`, check its status, then its read-back if any; the status."""
        request = action.request
        status, body = await self.send(request, deadline)
        if status not in action.expect_statuses:
            raise AdapterError(
                f"{action.name}: {request.method} {request.url}: HTTP {status}, expected "
                f"{', '.join(map(str, sorted(action.expect_statuses)))}: {truncate(body.strip())}"
            )
        if action.verify is not None:
            seen = await self.read(action.verify, deadline)
            if seen is not Presence.ABSENT:
                raise AdapterError(
                    f"{action.name}: the read-back {action.verify.request.url} says {seen}"
                )
        return status


class HttpAction:
    """A standalone action (the app's offline call, a config cleanup) over the shared client."""

    def __init__(self, action: Action, client: HttpClient) -> None:
        self._action = action
        self._client = client

    @property
    def name(self) -> str:
        """How the report names it."""
        return self._action.name

    async def run(self, deadline: float) -> None:
        """Send it, and verify it if configured (raises AdapterError)."""
        await self._client.run(self._action, deadline)


def http_actions(
    settings: Sequence[HttpActionSettings], pod: Identity, client: HttpClient, key: str
) -> list[HttpAction]:
    """The standalone actions of a settings list (`offline`, `cleanup`), rendered for this pod."""
    return [
        HttpAction(render_action(s, pod, f"{key}[{i}]"), client) for i, s in enumerate(settings)
    ]


def _header_value(header: Header) -> str:
    if not header.file:
        return header.value
    # A small local file (a mounted Secret): reading it inline is cheaper than a thread.
    try:
        secret = Path(header.file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise AdapterError(
            f"header {header.name}: cannot read secret file {header.file}: {e}"
        ) from e
    if not secret or any(c in secret for c in "\r\n\0"):
        raise AdapterError(
            f"header {header.name}: secret file {header.file} is empty or has line breaks"
        )
    return header.prefix + secret
