"""A bare aiohttp hello-world server: the floor the agent's memory is compared with."""

import asyncio
import sys

from aiohttp import web


async def main(port: int) -> None:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello\n")

    app.router.add_get("/readyz", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, None, port).start()
    await asyncio.Event().wait()


asyncio.run(main(int(sys.argv[1])))
