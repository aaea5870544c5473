"""Run in a fresh interpreter: how long the loop is blocked during KubeApi's first call.

`python -m tests.adapters.kube_first_call_probe <kubeconfig> <uid>` prints one JSON line:
whether the client was imported before the call, in which thread it was imported, and the
longest gap between a ticker's ticks while the first call ran.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

from sidecar.adapters.kube import KubeApi
from sidecar.drill.objects import NAMESPACE
from sidecar.settings import KubernetesSettings, PodIdentity

#: The ticker's stated interval.
TICK_SECONDS = 0.005


#: The thread that first imported a module of the client (audit event "import").
IMPORTED_IN: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "import" and str(args[0]).startswith("kubernetes_asyncio") and not IMPORTED_IN:
        IMPORTED_IN.append(threading.current_thread().name)


async def main(kubeconfig: str, uid: str) -> dict[str, object]:
    imported_before = "kubernetes_asyncio" in sys.modules
    sys.addaudithook(_audit)
    settings = KubernetesSettings(enabled=True, kubeconfig=kubeconfig, request_timeout_seconds=5.0)
    api = KubeApi(settings, PodIdentity("web-1", NAMESPACE, uid, ("10.1.0.7",)))
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    started = asyncio.Event()

    async def tick() -> None:
        last = loop.time()
        started.set()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await started.wait()
    try:
        pod = await api.read_pod()
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await api.close()
    return {
        "imported_before": imported_before,
        "imported_after": "kubernetes_asyncio" in sys.modules,
        "imported_in": IMPORTED_IN[0] if IMPORTED_IN else None,
        "loop_thread": threading.current_thread().name,
        "pod": pod["metadata"]["name"],
        "max_gap_seconds": max(gaps, default=0.0),
        "ticks": len(gaps),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
