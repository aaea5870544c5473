"""Registry routing for the drill: replicas register in etcd, callers find them there.

As Dubbo and Spring Cloud callers do, the load generator picks a replica from its own copy of
the registry, refreshed every `registry_refresh_seconds`, and sends straight to that replica's
Envoy: no Service, no ingress. Each replica's registrar holds its key under a lease and keeps
the lease alive while its app runs, so only the app's death (and then the TTL) or someone
else's write can take the key away. A watch notes, for the report, when the deleted pod's key
was marked down, written again, or removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from sidecar.drill.etcd import Change, EtcdServer, Gateway

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    from sidecar.drill.procs import Proc

#: Dubbo's layout: replicas register under `PROVIDERS`, overrides go under `CONFIGURATORS`;
#: callers read both (one range over `PREFIX`) and skip a provider an override disables.
PREFIX = "/services/web/"
PROVIDERS = PREFIX + "providers/"
CONFIGURATORS = PREFIX + "configurators/"
#: The override that takes a provider out of rotation, as Dubbo's `disabled=true`; the agent's
#: mark-down writes it, without a lease, so no keep-alive of the app can undo it.
DISABLED = '{"disabled": true}'


def key_of(ip: str, port: int) -> str:
    """A replica's key: `ip:port`, the port of its Envoy."""
    return f"{PROVIDERS}{ip}:{port}"


def override_of(key: str) -> str:
    """The override key of a provider's key."""
    return CONFIGURATORS + key.removeprefix(PROVIDERS)


def value_of(name: str, ip: str, port: int) -> str:
    """What a replica registers: where to reach it."""
    return json.dumps({"name": name, "address": ip, "port": port})


def disables(value: str) -> bool:
    """Whether an override's value takes its provider out of rotation (`"disabled": true`)."""
    try:
        entry = json.loads(value)
    except ValueError:
        return False
    return isinstance(entry, dict) and entry.get("disabled") is True


def routable(entries: dict[str, str]) -> frozenset[str]:
    """The provider keys a caller sends to: registered, and not disabled by an override."""
    return frozenset(
        key
        for key in entries
        if key.startswith(PROVIDERS) and not disables(entries.get(override_of(key), ""))
    )


async def register_while_running(
    gateway: Gateway, app: Proc, key: str, value: str, ttl_seconds: int
) -> None:
    """A replica's registrar: register under a lease, renew it every TTL/3 while the app runs.

    TTL/3 is etcd's own client's keep-alive period. A lost lease (expired or revoked) is
    granted again and the key written again, as live clients (go-zero, Kratos) do. Once the
    app has exited nothing renews the lease, and the key goes when the TTL runs out.
    """
    lease = await gateway.grant(ttl_seconds)
    await gateway.put(key, value, lease)
    while True:
        with contextlib.suppress(TimeoutError):
            await app.exited(ttl_seconds / 3)
            return
        if not await gateway.keepalive(lease):
            lease = await gateway.grant(ttl_seconds)
            await gateway.put(key, value, lease)


@dataclass
class Consumer:
    """A caller's copy of the registry, read every `refresh_seconds`, and round-robin over it."""

    gateway: Gateway
    refresh_seconds: float
    #: (loop time, routable keys) after each read.
    reads: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    _urls: list[str] = field(default_factory=list)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _read: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def refresh(self) -> None:
        """Read the registry once; from now on, send only to what it lists as routable."""
        keys = routable(await self.gateway.range(PREFIX))
        self._urls = [f"http://{k.removeprefix(PROVIDERS)}/" for k in sorted(keys)]
        async with self._read:
            self.reads.append((asyncio.get_running_loop().time(), keys))
            self._read.notify_all()

    async def run(self) -> None:
        """Refresh on the schedule until cancelled (etcd has a watch; these callers poll)."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()

    def pick(self) -> str:
        """The next replica's URL."""
        return self._urls[next(self._turn) % len(self._urls)]

    async def without(self, key: str) -> None:
        """Return once a read no longer routes to `key`."""
        async with self._read:
            await self._read.wait_for(lambda: key not in self.reads[-1][1])

    def left_at(self, key: str, since: float) -> float | None:
        """The first read after `since` that no longer routed to `key`, if any."""
        return next((t for t, keys in self.reads if t >= since and key not in keys), None)


@dataclass
class KeyLog:
    """What happened to one key, as a watch on the registry saw it (loop times)."""

    key: str
    changes: list[tuple[float, Change]] = field(default_factory=list)
    created: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def follow(self, gateway: Gateway) -> None:
        """Watch the registry until cancelled, noting every change of the key."""
        loop = asyncio.get_running_loop()
        async for change in gateway.watch(PREFIX, on_created=self.created.set):
            if change.key in (self.key, override_of(self.key)):
                async with self._changed:
                    self.changes.append((loop.time(), change))
                    self._changed.notify_all()

    async def until(self, seen: Callable[[], object]) -> None:
        """Return once `seen()` is true of the changes noted so far."""
        async with self._changed:
            await self._changed.wait_for(seen)

    def marked_down_at(self, since: float) -> float | None:
        """When an override first disabled the key after `since`."""
        override = override_of(self.key)
        return next(
            (t for t, c in self.changes if t >= since and c.key == override and disables(c.value)),
            None,
        )

    def removed_at(self, since: float) -> float | None:
        """When the key was first deleted (or expired with its lease) after `since`."""
        return next(
            (t for t, c in self.changes if t >= since and c.key == self.key and c.kind == "delete"),
            None,
        )

    def written_again_at(self, since: float) -> float | None:
        """When the key was first written after `since` (a registrar registering again)."""
        return next(
            (t for t, c in self.changes if t >= since and c.key == self.key and c.kind == "put"),
            None,
        )


@dataclass(frozen=True)
class Replica:
    """What a registrar needs of a replica: its name, address and app process."""

    name: str
    ip: str
    port: int
    app: Proc


class RegistryRouting:
    """One scenario's registry: etcd, a registrar per replica, the callers' copy, the watch."""

    def __init__(
        self, workdir: Path, refresh_seconds: float, ttl_seconds: int, host: str = "127.0.0.1"
    ) -> None:
        self.server = EtcdServer(workdir, host)
        self.ttl_seconds = ttl_seconds
        self._refresh_seconds = refresh_seconds
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.consumer: Consumer | None = None
        self.log: KeyLog | None = None

    async def start(self, replicas: list[Replica], watched: Replica) -> None:
        """Serve etcd, register every replica, follow `watched`'s key, and read once."""
        await self.server.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        gateway = Gateway(self._session, self.server.url)
        self.log = KeyLog(key_of(watched.ip, watched.port))
        self._spawn(self.log.follow(gateway), "registry-watch")
        await asyncio.wait_for(self.log.created.wait(), 5)
        for replica in replicas:
            key, value = (
                key_of(replica.ip, replica.port),
                value_of(replica.name, replica.ip, replica.port),
            )
            registrar = register_while_running(gateway, replica.app, key, value, self.ttl_seconds)
            self._spawn(registrar, f"registrar-{replica.name}")
        self.consumer = Consumer(gateway, self._refresh_seconds)
        async with asyncio.timeout(5):
            while len(self.consumer.reads[-1][1] if self.consumer.reads else ()) < len(replicas):
                await self.consumer.refresh()  # until every registrar has written its key
        self._spawn(self.consumer.run(), "registry-consumer")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def gone_for_callers(self, since: float, timeout_seconds: float) -> None:
        """Return once the watched key was removed after `since` and callers no longer use it."""
        assert self.log is not None  # noqa: S101 - start() came first
        assert self.consumer is not None  # noqa: S101 - start() came first
        log = self.log
        async with asyncio.timeout(timeout_seconds):
            await log.until(lambda: log.removed_at(since) is not None)
            await self.consumer.without(log.key)

    async def present(self, key: str) -> bool:
        """Whether `key` is in etcd now."""
        assert self._session is not None  # noqa: S101 - start() came first
        return key in await Gateway(self._session, self.server.url).range(key)

    async def stop(self) -> None:
        """Stop the registrars, the callers' refresh and the watch, then etcd."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self.server.stop()
