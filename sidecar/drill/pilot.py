"""A stand-in for Istio's pilot-agent in the drill's proxy container: `POST /quitquitquit`.

Injection points the agent at pilot-agent (`envoy.pilot_agent_url`) whenever the pod has a
mesh proxy, and the agent asks it to exit once Envoy is released. The drill's proxy is Envoy
alone, so this answers that call as pilot-agent does (200), and logs it.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


def build() -> web.Application:
    """`POST /quitquitquit` answers 200, as pilot-agent's does before it exits."""

    async def quit_(_: web.Request) -> web.Response:
        print("quitquitquit", flush=True)  # noqa: T201 - the drill reads its log
        return web.Response(text="OK\n")

    app = web.Application()
    app.router.add_post("/quitquitquit", quit_)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until the process is killed."""
    runner = web.AppRunner(build(), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()


def main() -> None:
    """`python -m sidecar.drill.pilot --port 15020`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
