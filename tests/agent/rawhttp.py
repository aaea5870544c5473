"""Raw HTTP/1.1 over a socket, for bytes a client library would refuse to send."""

from __future__ import annotations

import asyncio
import contextlib
import re

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


async def exchange(port: int, data: bytes, *, deadline_seconds: float = 5.0) -> bytes:
    """Send `data` to 127.0.0.1:`port` and return everything read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(deadline_seconds):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):  # the server may reset a refused connection
            await writer.wait_closed()


def status_of(answer: bytes) -> int | None:
    """The status code of a raw answer, None when the server closed without one."""
    if not answer:
        return None
    match = _STATUS.match(answer)
    assert match is not None, f"not an HTTP answer: {answer[:200]!r}"
    return int(match.group(1))
