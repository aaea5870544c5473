"""Process exit through psutil, when the pod shares its process namespace."""

from __future__ import annotations

import asyncio


def _running(names: frozenset[str]) -> bool:
    # Imported here: most pods never configure process names, and the idle agent stays smaller.
    import psutil  # noqa: PLC0415

    return any(proc.info["name"] in names for proc in psutil.process_iter(["name"]))


class ProcessProbe:
    """Whether any process of a set of names still runs; None when no names are configured.

    Names are only configured when `shareProcessNamespace` is on (docs/configuration.md);
    without it the other containers' processes are invisible and nothing can be concluded.
    """

    async def running(self, names: frozenset[str]) -> bool | None:
        """Look in a worker thread: psutil walks /proc, which can take milliseconds."""
        if not names:
            return None
        return await asyncio.to_thread(_running, names)
