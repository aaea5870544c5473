"""The kubelet's part of a pod deletion, for the drill: preStop hooks, SIGTERM, SIGKILL.

Follows kubernetes-behaviour B1-B19 and C1-C8: every running container is killed in
parallel; each runs its own hook for at most the grace, minus whole seconds elapsed; an
httpGet hook is a GET from the node to the pod IP whose status code is ignored and which is
never cancelled; SIGTERM follows with at least 2 s before SIGKILL; native sidecars wait for
the main containers and for the sidecars declared after them, in the same pod budget.

Not modelled, because the drill's hooks never need them: B12's rule against following a
redirect to another host (redirects are followed, at most 10), B13's HTTPS fallback, and
B18's refusal of tcpSocket hooks. An exec hook runs beside the container, not inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import aiohttp

if TYPE_CHECKING:
    from sidecar.drill.procs import Proc

#: B4(e): SIGTERM always gets at least this long before SIGKILL.
MINIMUM_GRACE_SECONDS = 2.0
#: B10: the lifecycle client's User-Agent (the kubelet's major.minor).
USER_AGENT = "kube-lifecycle/1.34"
#: B14: at most this much of a hook's answer is read.
BODY_LIMIT_BYTES = 10 * 1024


@dataclass(frozen=True)
class Hook:
    """A container's preStop handler."""

    kind: Literal["none", "http", "sleep", "exec"] = "none"
    #: http: the whole URL, the pod IP first (B9).
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    #: sleep: seconds (B17).
    seconds: float = 0.0
    #: exec: the command, run beside the container (the drill has no container runtime).
    argv: tuple[str, ...] = ()


@dataclass
class Container:
    """A running container: its process, its hook, and whether it is a native sidecar (C1)."""

    name: str
    proc: Proc
    hook: Hook = field(default_factory=Hook)
    sidecar: bool = False


@dataclass
class Killed:
    """What happened to one container, on the loop clock."""

    name: str
    hook_started: float | None = None
    hook_ended: float | None = None
    #: B8: FailedPreStopHook (transport error, failed command); None when it succeeded.
    hook_error: str | None = None
    sigterm_at: float | None = None
    sigkill_at: float | None = None
    exited_at: float | None = None


@dataclass
class Kubelet:
    """Terminates one pod's containers as the kubelet does."""

    containers: list[Container]
    grace_seconds: float
    #: The node's address, where httpGet hooks come from (B9); None: the kernel's choice.
    node_ip: str | None = None
    #: (loop time, type, reason, container) of each event the kubelet emits (B4a, B8).
    events: list[tuple[float, str, str, str]] = field(default_factory=list)
    _overrun: set[asyncio.Task[None]] = field(default_factory=set)

    async def terminate(self) -> dict[str, Killed]:
        """Kill every container in parallel (B5) and return once all have exited."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        grace = max(self.grace_seconds, 1.0)  # B1: never below 1 s
        mains = [c for c in self.containers if not c.sidecar]
        sidecars = [c for c in self.containers if c.sidecar]
        exited = {c.name: asyncio.Event() for c in self.containers}
        records = {c.name: Killed(c.name) for c in self.containers}

        # C3: a sidecar waits for every main container and every sidecar declared after it.
        waits: dict[str, list[asyncio.Event]] = {}
        for index, car in enumerate(sidecars):
            waits[car.name] = [exited[c.name] for c in mains + sidecars[index + 1 :]]

        async def kill(container: Container) -> None:
            turn = waits.get(container.name, [])
            await self._kill(container, records[container.name], started + grace, turn)
            exited[container.name].set()

        try:
            await asyncio.gather(*(kill(c) for c in self.containers))
        finally:
            # B7: an overrunning hook was left running; the drill ends it with the pod.
            for task in self._overrun:
                task.cancel()
            await asyncio.gather(*self._overrun, return_exceptions=True)
        return records

    async def _kill(
        self, container: Container, record: Killed, deadline: float, turn: list[asyncio.Event]
    ) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        self._event("Normal", "Killing", container.name)  # B4(a)
        grace = deadline - began
        if container.hook.kind != "none" and grace > 0:
            record.hook_started = loop.time()
            task = asyncio.create_task(self._run_hook(container, record), name="prestop")
            done, _ = await asyncio.wait({task}, timeout=grace)  # B4(c)
            if not done:
                self._overrun.add(task)  # B7: not cancelled
            # B4(c): the time spent is taken off in whole seconds.
            grace -= math.floor(loop.time() - began)
        if turn:  # C3, C4: the wait counts against the same budget
            waited_from = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, grace)):
                    for event in turn:
                        await event.wait()
            grace -= math.floor(loop.time() - waited_from)
        grace = max(grace, MINIMUM_GRACE_SECONDS)  # B4(e)
        record.sigterm_at = loop.time()
        container.proc.signal(signal.SIGTERM)  # B4(f)
        try:
            await container.proc.exited(grace)
        except TimeoutError:
            record.sigkill_at = loop.time()
            container.proc.signal(signal.SIGKILL)
            await container.proc.exited(10.0)
        record.exited_at = container.proc.exited_at

    async def _run_hook(self, container: Container, record: Killed) -> None:
        hook = container.hook
        try:
            if hook.kind == "http":
                await _http_get(hook, self.node_ip)
            elif hook.kind == "sleep":
                await asyncio.sleep(hook.seconds)
            elif hook.kind == "exec":
                await _exec(hook.argv)
        except Exception as e:  # B8: any failure is FailedPreStopHook, never more
            record.hook_error = f"{type(e).__name__}: {e}"
            self._event("Warning", "FailedPreStopHook", container.name)
        finally:
            record.hook_ended = asyncio.get_running_loop().time()

    def _event(self, kind: str, reason: str, container: str) -> None:
        self.events.append((asyncio.get_running_loop().time(), kind, reason, container))


async def _http_get(hook: Hook, node_ip: str | None) -> None:
    """B9-B14: GET with the kubelet's headers, no timeout of its own, status ignored."""
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **dict(hook.headers)}
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(local_addr=(node_ip, 0) if node_ip else None)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        session.get(hook.url, headers=headers, max_redirects=10) as response,
    ):
        await response.content.read(BODY_LIMIT_BYTES)


async def _exec(argv: tuple[str, ...]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        code = await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    if code != 0:
        raise RuntimeError(f"command exited with {code}")
