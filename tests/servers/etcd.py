"""A real etcd on loopback: fresh data dir, free ports, a start bounded by a deadline, a clean stop.

`running_etcd(tmp_path)` starts one (the binary is `/usr/bin/etcd`, Debian's `etcd-server`, or
`$ETCD_BINARY`) and stops it on exit; `EtcdServer.gateway` talks to its JSON gRPC gateway the way
a live app's client would (put with a lease, keep-alive, auth set-up).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.servers.process import ServerProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: How long etcd may take to answer /health (a single member elects itself in well under 1 s).
START_DEADLINE_SECONDS = 15.0
#: How often /health is asked while it starts (the only way to see an outside process ready).
POLL_SECONDS = 0.02


def etcd_binary() -> str | None:
    """The etcd binary to run, or None when it is not installed."""
    return os.environ.get("ETCD_BINARY") or shutil.which("etcd")


def b64(text: str) -> str:
    """A key or value as the gateway's JSON carries it."""
    return base64.b64encode(text.encode()).decode()


class EtcdServer(ServerProcess):
    """One etcd member on loopback."""

    name = "etcd"

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        super().__init__(
            [
                binary,
                "--name=test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                "--heartbeat-interval=10",
                "--election-timeout=50",
                "--logger=zap",
                "--log-level=warn",
            ],
            data_dir.parent / "etcd.log",
        )

    def start(self) -> None:
        """Start it and wait until /health says true, or fail the test by the deadline."""
        self.start_until(self._healthy, START_DEADLINE_SECONDS, POLL_SECONDS)

    def _healthy(self) -> bool:
        health = f"{self.url}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=1) as answer:  # noqa: S310 # our own loopback URL
            return b'"true"' in answer.read()
        return False


@contextmanager
def running_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A started etcd with its data under `tmp_path`, stopped on exit; skips if not installed."""
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd is not installed (make test installs the Debian package etcd-server)")
    server = EtcdServer(binary, tmp_path / "etcd-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Gateway:
    """A small client of the JSON gateway, as a live app (or an operator) would use it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = ""
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v3<path>; the answer, or an AssertionError naming the status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": self.token} if self.token else None
        async with self._session.post(
            f"{self.url}/v3{path}", json=body, headers=headers, timeout=aiohttp.ClientTimeout(5)
        ) as answer:
            data: dict[str, Any] = await answer.json(content_type=None)
            assert answer.status == 200, f"{path}: HTTP {answer.status}: {data}"
            return data

    async def grant(self, ttl_seconds: int = 30) -> int:
        return int((await self.post("/lease/grant", {"TTL": str(ttl_seconds)}))["ID"])

    async def put(self, key: str, value: str = "up", lease: int = 0) -> None:
        await self.post("/kv/put", {"key": b64(key), "value": b64(value), "lease": str(lease)})

    async def keep_alive(self, lease: int) -> int:
        """Refresh a lease once; its TTL, or -1 once it no longer exists."""
        answer = await self.post("/lease/keepalive", {"ID": str(lease)})
        return int(answer["result"].get("TTL", -1))

    async def keys(self, prefix: str) -> dict[str, int]:
        """Every key under `prefix` with its lease (0: none)."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        answer = await self.post("/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return {
            base64.b64decode(kv["key"]).decode(): int(kv.get("lease", 0))
            for kv in answer.get("kvs", [])
        }

    async def lease_alive(self, lease: int) -> bool:
        answer = await self.post("/lease/timetolive", {"ID": str(lease)})
        return int(answer.get("TTL", -1)) > 0

    async def enable_auth(self, password: str) -> None:
        """Create root with `password`, grant it the root role, enable auth, log in as root."""
        await self.post("/auth/user/add", {"name": "root", "password": password})
        await self.post("/auth/user/grant", {"user": "root", "role": "root"})
        await self.post("/auth/enable", {})
        self.token = (
            await self.post("/auth/authenticate", {"name": "root", "password": password})
        )["token"]
