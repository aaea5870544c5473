"""The drill's real etcd: one member on loopback, and a small client of its JSON gateway.

etcd 3.4's gRPC gateway serves every RPC as `POST /v3/...` with a JSON body; keys and values
are base64 in it, int64s (lease IDs, TTLs, revisions) are strings, and empty fields are left
out (a keep-alive of an expired lease answers without `TTL`). See docs/registries/etcd.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from sidecar.drill.procs import Proc, free_port, spawn, stopped_on_failure, wait_for_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path


def encode(text: str) -> str:
    """A key or value as the gateway wants it: base64 of its UTF-8 bytes."""
    return base64.b64encode(text.encode()).decode()


def decode(text: str) -> str:
    """The reverse of `encode`."""
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The `range_end` that covers every key starting with `prefix` (last byte plus one)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class Change:
    """One watched change: a put (with its value) or a delete of `key`."""

    kind: Literal["put", "delete"]
    key: str
    value: str = ""


class Gateway:
    """The calls the drill makes through the gateway, on one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session, self.url = session, url

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one RPC; an error status raises aiohttp.ClientResponseError."""
        async with self._session.post(f"{self.url}{path}", json=body) as response:
            response.raise_for_status()
            answer: dict[str, Any] = await response.json(content_type=None)
            return answer

    async def grant(self, ttl_seconds: int) -> str:
        """A new lease; its ID."""
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl_seconds)})
        return str(answer["ID"])

    async def keepalive(self, lease: str) -> bool:
        """Renew a lease once; False when it has expired (the answer has no TTL)."""
        answer = await self.call("/v3/lease/keepalive", {"ID": lease})
        return int(answer.get("result", {}).get("TTL", 0)) > 0

    async def put(self, key: str, value: str, lease: str = "0") -> None:
        """Write `key` (attached to `lease`, when not "0")."""
        await self.call("/v3/kv/put", {"key": encode(key), "value": encode(value), "lease": lease})

    async def range(self, prefix: str) -> dict[str, str]:
        """Every key under `prefix`, with its value."""
        body = {"key": encode(prefix), "range_end": encode(prefix_end(prefix))}
        answer = await self.call("/v3/kv/range", body)
        return {decode(kv["key"]): decode(kv.get("value", "")) for kv in answer.get("kvs", [])}

    async def watch(self, prefix: str, on_created: Callable[[], None]) -> AsyncIterator[Change]:
        """The changes under `prefix` from now on, as etcd streams them (one JSON per line).

        `on_created` is called once etcd confirms the watch: no change after that is missed.
        """
        body = {"create_request": {"key": encode(prefix), "range_end": encode(prefix_end(prefix))}}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._session.post(
            f"{self.url}/v3/watch", json=body, timeout=timeout
        ) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                if result.get("created"):
                    on_created()
                for event in result.get("events", []):
                    kv = event["kv"]
                    kind: Literal["put", "delete"] = "delete" if event.get("type") else "put"
                    yield Change(kind, decode(kv["key"]), decode(kv.get("value", "")))


class EtcdServer:
    """One etcd member serving on `host` (the node's address), its data in a fresh folder."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.folder = workdir / "etcd"
        self.host = host
        self.client_port, self.peer_port = free_port(host), free_port()
        self.url = f"http://{host}:{self.client_port}"
        self.proc: Proc | None = None

    async def start(self) -> None:
        """Start it; return once its gateway answers."""
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        self.folder.mkdir()
        peer, client = f"http://127.0.0.1:{self.peer_port}", self.url
        argv = [
            binary,
            "--name=drill",
            f"--data-dir={self.folder / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=drill={peer}",
            "--log-level=warn",
        ]
        self.proc = await spawn("etcd", argv, self.folder)
        async with stopped_on_failure(self.proc):  # an etcd that never got healthy is not left
            await wait_for_port(self.host, self.client_port)
            await self._healthy()

    async def _healthy(self) -> None:
        """Return once /health says true, within 10 s (TimeoutError if not)."""
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            while True:  # the port opens before the member is elected; no event says when
                async with session.get(f"{self.url}/health") as response:
                    if (
                        response.status == 200
                        and (await response.json(content_type=None))["health"] == "true"
                    ):
                        return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop it (its data folder goes with the drill's)."""
        if self.proc is not None:
            await self.proc.stop()
