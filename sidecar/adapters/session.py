"""One aiohttp session per client, opened at its first request and closed once.

Nothing connects, and no session exists, while the pod serves: the agent stays idle and small.
"""

from __future__ import annotations

import aiohttp


class LazySession:
    """The session of one client; `get` opens it when first needed."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def opened(self) -> bool:
        """Whether a session exists now."""
        return self._session is not None

    def get(self) -> aiohttp.ClientSession:
        """The session, opened now if it was not."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the session, if one was opened (safe to call again)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
