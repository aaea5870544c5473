"""Envoy's admin API (and Istio pilot-agent's quit endpoint), over HTTP on localhost."""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from sidecar.errors import AdapterError, truncate


class EnvoyAdmin:
    """The few admin calls the coordinator needs; every call is bounded and raises AdapterError.

    Mutating endpoints must be POST (a GET answers 405), and query flags count by presence
    only, so they are sent bare (`?inboundonly&graceful`), never as `flag=true`.
    """

    def __init__(
        self, admin_url: str, *, pilot_agent_url: str | None = None, timeout_seconds: float = 1.0
    ) -> None:
        self._admin = admin_url.rstrip("/")
        self._pilot = pilot_agent_url.rstrip("/") if pilot_agent_url else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, url: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, URL(url, encoded=True)) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as e:
            raise AdapterError(f"{method} {url}: {type(e).__name__}: {e}") from e
        if status != 200:
            shown = raw.decode("utf-8", errors="replace").strip()
            raise AdapterError(f"{method} {url}: HTTP {status}: {truncate(shown)}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            shown = raw.decode("utf-8", errors="backslashreplace")
            raise AdapterError(
                f"{method} {url}: body is not UTF-8 (at byte {e.start}): {truncate(shown)}"
            ) from None

    async def drain_inbound(self) -> None:
        """Drain inbound listeners: Connection: close / GOAWAY as requests complete.

        `skip_exit` keeps the listeners accepting after --drain-time-s: a data plane that has
        not caught up yet may still send new connections, and a refused one is a failed request.
        """
        await self._call("POST", f"{self._admin}/drain_listeners?inboundonly&graceful&skip_exit")

    async def server_info(self) -> dict[str, Any]:
        """The /server_info document (state, version, command-line options)."""
        import json  # noqa: PLC0415 - only this call parses JSON

        try:
            info: dict[str, Any] = json.loads(await self._call("GET", f"{self._admin}/server_info"))
        except ValueError as e:
            raise AdapterError(f"GET {self._admin}/server_info: not JSON: {e}") from e
        return info

    async def active_connections(self) -> dict[str, int]:
        """`downstream_cx_active` per listener, without per-worker lines and the admin listener.

        Istio trims stats but keeps this suffix ("needed for draining"). A gauge never used may
        be absent, so an empty answer is not proof of zero.
        """
        text = await self._call("GET", f"{self._admin}/stats?filter=downstream_cx_active%24")
        result: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if (
                not name.startswith("listener.")
                or ".worker_" in name
                or name.startswith("listener.admin.")
            ):
                continue
            try:
                result[name.removeprefix("listener.").removesuffix(".downstream_cx_active")] = int(
                    value
                )
            except ValueError:
                continue
        return result

    async def quit(self) -> None:
        """Ask Envoy to exit now (no drain of its own: ours is done)."""
        await self._call("POST", f"{self._admin}/quitquitquit")

    async def quit_pilot_agent(self) -> bool:
        """Ask Istio's pilot-agent to exit; False when none is configured."""
        if self._pilot is None:
            return False
        await self._call("POST", f"{self._pilot}/quitquitquit")
        return True
