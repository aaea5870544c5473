"""A realistic app for the drill: slow requests, keep-alive, and naive SIGTERM handling.

Naive like many real apps: it installs no SIGTERM handler, so the kernel ends it at once and
every in-flight request is dropped. Only the coordinator's ordering protects those requests.
"""

from __future__ import annotations

import argparse
import asyncio
import random

from aiohttp import web

#: The response header naming the replica that answered, for the drill's accounting.
SERVED_BY = "X-Served-By"


def build(name: str, latency_ms: tuple[int, int]) -> web.Application:
    """The app: `/` answers after a random latency, `/healthz` at once."""
    low, high = latency_ms

    async def work(_: web.Request) -> web.Response:
        await asyncio.sleep(random.uniform(low, high) / 1000)
        return web.Response(text=f"ok from {name}\n", headers={SERVED_BY: name})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/", work)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int, name: str, latency_ms: tuple[int, int]) -> None:
    """Serve until the process is killed."""
    runner = web.AppRunner(build(name, latency_ms), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"listening on {host}:{port}", flush=True)  # noqa: T201 - the parent waits for this line
    await asyncio.Event().wait()


def main() -> None:
    """`python -m sidecar.drill.app --port 8080 --latency-ms 20 300`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="app")
    parser.add_argument("--latency-ms", type=int, nargs=2, default=(20, 300))
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.name, tuple(args.latency_ms)))


if __name__ == "__main__":
    main()
