"""What `make bench` measures: the agent's memory, start and idle CPU, and one sample's cost."""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable  # noqa: TC003 - one import style in a script
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.adapters.traffic import procnet
from sidecar.adapters.traffic.sockdiag import (
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSGHDR,
    SockDiag,
    dump_request,
)
from sidecar.model.traffic import TrafficSample, assess, policy_for

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def ready(port: int, limit_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + limit_seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)
    raise TimeoutError(f"port {port} never became ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_command(python: str, workdir: Path, port: int) -> list[str]:
    """The agent as the image runs it, started by `python` (a runtime-only venv's)."""
    settings = workdir / "agent.yaml"
    settings.write_text(
        "containers: [{name: app, ports: [8080]}, {name: envoy, role: proxy, ports: [15006]}]\n"
        f"server: {{port: {port}, allow_unauthenticated: true}}\n"
        "envoy: {admin_url: 'http://127.0.0.1:15000'}\n"
    )
    return [python, "-m", "sidecar", "agent", "-c", str(settings), "--log-format", "json"]


def bare_command(python: str, port: int) -> list[str]:
    return [python, str(HERE / "bare_server.py"), str(port)]


async def start(command: list[str], port: int) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    # Popen returns at once; the wait that matters is the readiness probe below.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    await ready(port)
    return process, time.monotonic() - started


async def memory_and_start(
    make: Callable[[Path, int], list[str]], runs: int
) -> tuple[float, float]:
    rss, starts = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(runs):
            port = free_port()
            process, took = await start(make(Path(workdir), port), port)
            await asyncio.sleep(1.0)  # let start-up allocations settle before reading RSS
            rss.append(rss_mib(process.pid))
            starts.append(took)
            process.terminate()
            process.wait()
    return statistics.median(rss), statistics.median(starts)


async def held_hooks(session: aiohttp.ClientSession, port: int) -> int:
    async with session.get(f"http://127.0.0.1:{port}/status") as answer:
        return int((await answer.json())["hooks"]["held"])


async def rss_under_load(python: str, hooks: int, slow_heads: int) -> float:
    """RSS (MiB) while `hooks` preStop hooks are held and `slow_heads` clients dribble heads.

    The hooks are real held requests (the app's, waiting for its turn); the slow clients send
    half a request head and stop, as a slowloris does; RSS is read once all are in place.
    """
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        process, _ = await start(agent_command(python, Path(workdir), port), port)
        writers = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"http://127.0.0.1:{port}/prestop/app"
            held = [asyncio.ensure_future(session.get(url)) for _ in range(hooks)]
            for _ in range(slow_heads):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n")
                writers.append(writer)
            async with asyncio.timeout(30):
                # The agent is another process: its /status is the only signal there is.
                while await held_hooks(session, port) < hooks:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            rss = rss_mib(process.pid)
            for request in held:
                request.cancel()
            await asyncio.gather(*held, return_exceptions=True)
        for writer in writers:
            writer.close()
        process.terminate()
        process.wait()
    return rss


async def idle_cpu(python: str, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        process, _ = await start(agent_command(python, Path(workdir), port), port)
        await asyncio.sleep(1.0)
        before = cpu_seconds(process.pid)
        await asyncio.sleep(seconds)
        used = cpu_seconds(process.pid) - before
        process.terminate()
        process.wait()
    return 100 * used / seconds


def time_wait_sockets() -> float:
    """TIME_WAIT sockets in this network namespace: every dump walks them too."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return float(fields[fields.index("tw") + 1])
    return float("nan")


_CLIENTS = """
import socket, sys
port, n, peers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def connect(i):
    s = socket.socket()
    if peers > 1:  # the port is picked at connect, by the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT)
        s.setsockopt(socket.SOL_IP, 24, 1)
        s.bind((f"127.0.{i % peers // 250}.{i % peers % 250 + 1}", 0))
    s.connect(("127.0.0.1", port))
    return s
held = [connect(i) for i in range(n)]
print("ready", flush=True)
sys.stdin.read()
"""


def _kernel_floor(nl: socket.socket, buffer: bytearray, ports: frozenset[int]) -> None:
    """The dump alone: the kernel's work plus a walk over message headers, no parsing."""
    for family in (socket.AF_INET, socket.AF_INET6):
        nl.send(dump_request(family, ports, kernel_filter=True))
        done = False
        while not done:
            size, offset = nl.recv_into(buffer), 0
            while offset < size:
                length, kind = NLMSGHDR.unpack_from(buffer, offset)[:2]
                if kind == NLMSG_DONE:
                    done = True
                    break
                offset += (length + 3) & ~3


def _timed_in_turns(measured: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each, timed one after the other in every round."""
    times: dict[str, list[float]] = {name: [] for name in measured}
    for _ in range(repeats):
        for name, fn in measured.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def sample_cost(connections: int, repeats: int = 30, peers: int = 1) -> dict[str, float]:
    """Cost of one sample with `connections` established on the watched port (ms, medians).

    The client ends live in a helper process, so each process stays under the fd limit; they
    come from `peers` loopback addresses (one, as behind a mesh proxy, unless asked).

    `floor` is the kernel's part: the very requests the sampler sends (same states, the one
    extension INET_DIAG_INFO, the same port bytecode), with only the message headers walked.
    `ratio` is `netlink` over `floor`. All are timed in turns, so a neighbour's load falls on
    each alike.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(connections)
    port = server.getsockname()[1]
    helper = subprocess.Popen(
        [sys.executable, "-c", _CLIENTS, str(port), str(connections), str(peers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    accepted = [server.accept()[0] for _ in range(connections)]
    assert helper.stdout is not None
    helper.stdout.readline()
    ports = frozenset({port})
    policy = policy_for(ports, "10.0.0.1")
    diag = SockDiag()
    floor_socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    buffer = bytearray(1 << 20)

    def netlink() -> None:
        listening, conns = diag.read(ports)
        assert (listening, len(conns)) == (ports, connections), (listening, len(conns))

    def netlink_sample() -> None:
        listening, conns = diag.read(ports)
        assess(TrafficSample(0.0, listening, conns, has_timing=True), policy)

    result = _timed_in_turns(
        {
            "floor": lambda: _kernel_floor(floor_socket, buffer, ports),
            "netlink": netlink,
            "netlink+assess": netlink_sample,
            "proc": lambda: procnet.read(ports),
        },
        repeats,
    )
    result["ratio"] = result["netlink"] / result["floor"]
    result["time_wait"] = time_wait_sockets()
    assert diag._kernel_filter, "the kernel refused the port filter"  # noqa: SLF001 - a check
    diag.close()
    floor_socket.close()
    helper.communicate(b"")
    for s in accepted:
        s.close()
    server.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return result


#: The name the webhook's certificate is for, as the API server asks for it (SNI).
WEBHOOK_SERVICE, WEBHOOK_NAMESPACE = "shutdown-coordinator-injector", "shutdown-coordinator-system"
#: The review the API server sends for a Deployment's pod with Istio's proxy: injected each time.
WEBHOOK_POD: dict[str, Any] | None = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "web-7d9f8b-",
        "namespace": "shop",
        "labels": {"app": "web", "pod-template-hash": "7d9f8b"},
    },
    "spec": {
        "containers": [
            {"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]},
            {
                "name": "istio-proxy",
                "image": "istio/proxyv2:1.22.0",
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
            },
        ],
        "terminationGracePeriodSeconds": 30,
    },
}


def webhook_review(uid: str, variant: int = 0) -> bytes:
    """An AdmissionReview v1 for a pod CREATE, as the API server sends it.

    Each `variant` tunes the agent differently, so no two reviews of a run share settings and
    the injector's remembered verdicts never help: the figures are its slowest path.
    """
    pod = WEBHOOK_POD
    if pod is not None:
        annotations = {"shutdown-coordinator.io/quiet-window-seconds": f"{1 + variant / 10_000:g}"}
        pod = {**pod, "metadata": {**pod["metadata"], "annotations": annotations}}
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod,
        "dryRun": False,
    }
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(review).encode()


def webhook_command(python: str, workdir: Path, port: int) -> list[str]:
    """The injector as the image runs it, with certificates made by `certs` and a token file."""
    tls = workdir / "tls"
    certs = [python, "-m", "sidecar", "certs", "--out", str(tls)]
    certs += ["--service", WEBHOOK_SERVICE, "--namespace", WEBHOOK_NAMESPACE]
    subprocess.run(certs, check=True, capture_output=True, timeout=60)
    (workdir / "template.yaml").write_text("mode: classic\n")
    (workdir / "token").write_text("0123456789abcdef0123456789abcdef\n")
    return [
        python,
        "-m",
        "sidecar",
        "injector",
        "--cert",
        str(tls / "tls.crt"),
        "--key",
        str(tls / "tls.key"),
        "--template",
        str(workdir / "template.yaml"),
        "--token-file",
        str(workdir / "token"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-format",
        "json",
    ]


async def webhook_latency(python: str, rate: float, seconds: float) -> dict[str, float]:
    """p50 and p99 (ms) and errors of the injector answering reviews at `rate`/s, open loop.

    Real TLS on loopback, keep-alive connections as the API server keeps them. Each review is
    sent at its own time whether or not earlier ones were answered (open loop: a slow answer
    delays only itself, and queueing inside the injector counts). Its latency counts from the
    moment it is handed to the client, not from its scheduled time: the client's own timer
    wakes up to a millisecond late (epoll rounds timeouts up to whole milliseconds), which is
    not the injector's time; how late the client sent is reported apart (`send_lag_p99`). An
    error is a transport failure, an answer other than 200, or an answer without the patch.
    """
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        port = free_port()
        command = webhook_command(python, workdir, port)
        ssl_context = ssl.create_default_context(cafile=str(workdir / "tls" / "ca.crt"))
        host = f"{WEBHOOK_SERVICE}.{WEBHOOK_NAMESPACE}.svc"
        url = f"https://127.0.0.1:{port}"
        with (workdir / "injector.log").open("wb") as log:
            # Popen returns at once; the wait that matters is the readiness probe below.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        try:
            connector = aiohttp.TCPConnector(limit=64, ssl=ssl_context)
            async with aiohttp.ClientSession(connector=connector) as session:
                await _webhook_ready(session, url, host)
                loop = asyncio.get_running_loop()
                count = int(rate * seconds)
                for index in range(20):  # warm up: a connection open, code paths hot
                    await _review(session, url, host, f"warm-{index}", count + index)
                started = loop.time()

                async def one(index: int) -> tuple[float, float | None]:
                    due = started + index / rate
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    sent = loop.time()
                    ok = await _review(session, url, host, f"bench-{index}", index)
                    return (sent - due) * 1000, (loop.time() - sent) * 1000 if ok else None

                lags, took = zip(
                    *await asyncio.gather(*(one(i) for i in range(count))), strict=True
                )
                elapsed = loop.time() - started
        finally:
            process.send_signal(signal.SIGINT)  # stops at once; SIGTERM would drain for 5 s
            process.wait()
        inside = _answer_times(workdir / "injector.log")
    latencies = sorted(t for t in took if t is not None) or [math.nan]
    return {
        "requests": count,
        "errors": sum(t is None for t in took),
        "p50": statistics.median(latencies),
        "p99": _p99(latencies),
        "server_p50": statistics.median(inside),
        "server_p99": _p99(inside),
        "rate": count / elapsed,
        "max": max(latencies),
        "send_lag_p99": _p99(list(lags)),
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _answer_times(log: Path) -> list[float]:
    """The injector's own time per measured review (its `review_answered` lines), in ms."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "review_answered" and str(entry.get("uid")).startswith("bench-"):
            times.append(float(entry["milliseconds"]))
    return times or [math.nan]


async def _webhook_ready(session: aiohttp.ClientSession, url: str, host: str) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                async with session.get(f"{url}/readyz", server_hostname=host) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)  # another process: polling is the only way to see it


async def _review(
    session: aiohttp.ClientSession, url: str, host: str, uid: str, variant: int
) -> bool:
    """One review answered with a patch."""
    try:
        async with session.post(
            f"{url}/mutate",
            data=webhook_review(uid, variant),
            headers={"Content-Type": "application/json"},
            server_hostname=host,
        ) as response:
            if response.status != 200:
                return False
            answer = await response.json()
    except (aiohttp.ClientError, ValueError):
        return False
    reply = answer.get("response", {})
    return bool(reply.get("uid") == uid and reply.get("patchType") == "JSONPatch")
