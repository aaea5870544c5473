"""The ZooKeeper registry: Dubbo's provider nodes, found by host and port, deleted by raw name.

Dubbo registers a provider as an ephemeral node `{root}/{interface}/providers/{encoded URL}`
(docs/registries/zookeeper.md). kazoo, an optional extra, is imported at the first call; its
requests run on its own threads and are awaited here through callbacks, each bounded by the
request's timeout and the deadline. `close` stops its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.dubbo import (
    Provider,
    canonical_host,
    java_url_encode,
    override_url,
    parse_provider,
)
from sidecar.model.http_action import render
from sidecar.model.registry import Answer, Presence

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.model.http_action import Identity
    from sidecar.settings.registry_zookeeper import ZookeeperRegistrySettings

log = structlog.get_logger(__name__)

#: What to install for this back end.
EXTRA = "pip install 'shutdown-coordinator[zookeeper]'"


def kazoo_installed() -> bool:
    """Whether kazoo can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("kazoo") is not None
    except (ImportError, ValueError):
        return False


def import_kazoo(what: str) -> tuple[Any, Any]:
    """The client and exceptions modules of kazoo, or an AdapterError naming the extra."""
    try:
        return importlib.import_module("kazoo.client"), importlib.import_module("kazoo.exceptions")
    except ImportError as e:
        raise AdapterError(f"{what}: kazoo is not installed ({e}); {EXTRA}") from e


class ZookeeperRegistry:
    """Dubbo providers in ZooKeeper: mark down with an override, delete, read back, delete again."""

    def __init__(
        self, settings: ZookeeperRegistrySettings, pod: Identity, *, key: str = "registries[0]"
    ) -> None:
        if not kazoo_installed():
            raise ConfigError(f"{key}: kind zookeeper needs kazoo, which is not installed; {EXTRA}")
        rendered = render(settings.host, pod, "text", f"{key}.host")
        self._hosts = frozenset(canonical_host(h.strip()) for h in rendered.split(",") if h.strip())
        if not self._hosts:
            raise ConfigError(f"{key}.host: no host once rendered for this pod, got {rendered!r}")
        self._settings = settings
        self._name = settings.name
        self._ports = frozenset(settings.ports)
        self._services = tuple(f"{settings.root}/{java_url_encode(i)}" for i in settings.interfaces)
        self._client: Any = None
        self._errors: Any = None
        self._up = asyncio.Event()
        #: Provider nodes we deleted: one seen again was put back by a live session.
        self._deleted: set[str] = set()
        #: Override nodes we created (ephemeral: they also go with our session).
        self._overrides: set[str] = set()

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._name

    @property
    def can_mark_down(self) -> bool:
        """Whether announce writes Dubbo's disabling override."""
        return self._settings.mark_down == "override"

    @property
    def can_force(self) -> bool:
        """Whether retire deletes again what the read-back still finds."""
        return self._settings.force_remove

    async def mark_down(self, deadline: float) -> None:
        """An ephemeral `override://host:port/interface?disabled=true` beside each of our nodes."""
        if not self.can_mark_down:
            raise AdapterError(f"{self._name}: mark_down is `none`")
        providers = await self._providers(deadline)
        paths = {f"{p.service}/configurators/{java_url_encode(override_url(p))}" for p in providers}
        await asyncio.gather(*(self._create(path, deadline) for path in sorted(paths)))
        self._overrides |= paths
        if not providers:  # unregistered already (the app's offline call), or host/ports wrong
            log.warning(
                "zookeeper_no_provider_to_mark_down", name=self._name, ports=sorted(self._ports)
            )
        else:
            log.info("zookeeper_marked_down", name=self._name, providers=len(providers))

    async def deregister(self, deadline: float) -> Answer:
        """Delete our provider nodes: OK, or GONE when there were none (and none deleted before)."""
        providers = await self._providers(deadline)
        await self._delete_all(providers, deadline)
        return Answer.OK if providers or self._deleted else Answer.GONE

    async def is_present(self, deadline: float) -> Presence:
        """List again: PRESENT while a node of ours is there; once none is, our overrides go."""
        providers = await self._providers(deadline)
        if not providers:
            await self._cleanup(deadline)
            return Presence.ABSENT
        back = [p.path for p in providers if p.path in self._deleted]
        if back:
            owners = await self._owners(back, deadline)
            log.warning("zookeeper_provider_recreated", name=self._name, sessions=owners)
        return Presence.PRESENT

    async def force_remove(self, deadline: float) -> None:
        """Delete again; raise if what we had deleted came back (a live session re-created it)."""
        providers = await self._providers(deadline)
        back = [p.path for p in providers if p.path in self._deleted]
        owners = await self._owners(back, deadline) if back else []
        await self._delete_all(providers, deadline)
        if back:
            raise AdapterError(
                f"{self._name}: {len(back)} provider node(s) came back after our delete, "
                f"re-created by live ZooKeeper session(s) {', '.join(owners)}: the app still "
                "re-registers; deleted again, the node goes for good when that session ends"
            )

    async def close(self) -> None:
        """End our session (its override nodes go with it) and stop kazoo's threads.

        A hung server would hold kazoo's close for up to the session timeout: after
        `timeout_seconds` its socket is shut, which ends the blocking read at once.
        """
        client, self._client = self._client, None
        if client is None:
            return
        stopping = asyncio.ensure_future(asyncio.to_thread(_stop, client))
        _, pending = await asyncio.wait({stopping}, timeout=self._settings.timeout_seconds)
        if pending:
            _interrupt(client)
        await stopping

    # Reads and writes.

    async def _providers(self, deadline: float) -> list[Provider]:
        services = self._services or await self._scan(deadline)
        listed = await asyncio.gather(
            *(self._children(f"{s}/providers", deadline) for s in services)
        )
        ours: list[Provider] = []
        for service, children in zip(services, listed, strict=True):
            for raw in children:
                parsed = parse_provider(service, raw)
                if parsed is not None and self._matches(parsed[1], parsed[2]):
                    ours.append(parsed[0])
        return ours

    def _matches(self, host: str, port: int) -> bool:
        return port in self._ports and canonical_host(host) in self._hosts

    async def _scan(self, deadline: float) -> list[str]:
        root = self._settings.root
        return [f"{root}/{s}" for s in await self._children(root, deadline)]

    async def _children(self, path: str, deadline: float) -> list[str]:
        try:
            children: list[str] = await self._call(
                f"list {path}", deadline, lambda zk: zk.get_children_async(path)
            )
        except _MissingError:
            return []
        return children

    async def _owners(self, paths: list[str], deadline: float) -> list[str]:
        async def owner(path: str) -> str:
            try:
                stat = await self._call(f"stat {path}", deadline, lambda zk: zk.exists_async(path))
            except _MissingError:
                stat = None
            return "none (gone again)" if stat is None else f"0x{stat.ephemeralOwner:x}"

        return list(await asyncio.gather(*(owner(p) for p in paths)))

    async def _delete_all(self, providers: list[Provider], deadline: float) -> None:
        await asyncio.gather(*(self._delete(p.path, deadline) for p in providers))
        self._deleted |= {p.path for p in providers}

    async def _delete(self, path: str, deadline: float) -> None:
        with contextlib.suppress(_MissingError):
            await self._call(f"delete {path}", deadline, lambda zk: zk.delete_async(path))

    async def _create(self, path: str, deadline: float) -> None:
        def create(zk: Any) -> Any:
            return zk.create_async(path, b"", ephemeral=True, makepath=True)

        with contextlib.suppress(_ExistsError):
            await self._call(f"create {path}", deadline, create)

    async def _cleanup(self, deadline: float) -> None:
        """Delete our overrides, so that no later pod at this address is born disabled."""
        await asyncio.gather(*(self._delete(p, deadline) for p in sorted(self._overrides)))
        self._overrides.clear()

    # The session and one request.

    async def _call(self, what: str, deadline: float, start: Callable[[Any], Any]) -> Any:
        """One kazoo request, awaited through its callback until the timeout or the deadline."""
        client = await self._connected(deadline)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        start(client).rawlink(lambda result: _settle_soon(loop, future, result))
        until = self._until(deadline, what)
        bound = until - loop.time()
        try:
            async with asyncio.timeout_at(until):
                return await future
        except TimeoutError:
            raise AdapterError(f"{self._name}: {what}: no answer within {bound:.3g} s") from None
        except self._errors.NoNodeError as e:
            raise _MissingError from e
        except self._errors.NodeExistsError as e:
            raise _ExistsError from e
        except self._errors.NoAuthError as e:
            raise AdapterError(
                f"{self._name}: {what}: not allowed by the node's ACL (auth_file must hold "
                "the digest identity the app registers with)"
            ) from e
        except Exception as e:  # kazoo's errors: connection loss, session expiry, ...
            raise AdapterError(
                f"{self._name}: {what}: {type(e).__name__}: {truncate(str(e))}"
            ) from e

    async def _connected(self, deadline: float) -> Any:
        """The client, started at the first call, once connected (by the timeout or deadline)."""
        if self._client is None:
            self._client = self._start()
        if not self._client.connected:
            until = self._until(deadline, "connect")
            try:
                async with asyncio.timeout_at(until):
                    await self._up.wait()
            except TimeoutError:
                raise AdapterError(
                    f"{self._name}: no ZooKeeper session with {self._settings.hosts} yet"
                ) from None
        return self._client

    def _start(self) -> Any:
        client_module, self._errors = import_kazoo(self._name)
        settings = self._settings
        auth = self._auth()
        client = client_module.KazooClient(
            hosts=settings.hosts + settings.chroot,
            timeout=settings.session_timeout_seconds,
            auth_data=[("digest", auth)] if auth else None,
            default_acl=_creator_acl() if auth else None,
            # Reconnect soon after a server comes back; requests stay bounded by our timeouts.
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
        )
        loop = asyncio.get_running_loop()

        def changed(state: str) -> None:  # on kazoo's thread: hand it to the loop
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._state, state)

        client.add_listener(changed)
        client.start_async()
        return client

    def _state(self, state: str) -> None:
        if state == "CONNECTED":
            self._up.set()
        else:
            self._up.clear()

    def _auth(self) -> str:
        if not self._settings.auth_file:
            return ""
        try:
            auth = Path(self._settings.auth_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise AdapterError(f"{self._name}: auth_file: {e.strerror}") from e
        if ":" not in auth:
            raise AdapterError(f"{self._name}: auth_file: expected user:password (digest)")
        return auth

    def _until(self, deadline: float, what: str) -> float:
        now = asyncio.get_running_loop().time()
        if deadline <= now:
            raise AdapterError(f"{self._name}: {what}: no time left before the deadline")
        return min(deadline, now + self._settings.timeout_seconds)


class _MissingError(Exception):
    """The node is not there (NoNodeError)."""


class _ExistsError(Exception):
    """The node is already there (NodeExistsError)."""


def _settle_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any) -> None:
    """On kazoo's thread: pass a request's answer to the loop that awaits it."""

    def settle() -> None:
        if future.done():
            return  # given up on (timed out); the answer comes too late
        if result.exception is None:
            future.set_result(result.value)
        else:
            future.set_exception(result.exception)

    with contextlib.suppress(RuntimeError):  # the loop has closed
        loop.call_soon_threadsafe(settle)


def _creator_acl() -> Any:
    return importlib.import_module("kazoo.security").CREATOR_ALL_ACL


def _interrupt(client: Any) -> None:
    """Shut kazoo's socket (a private attribute of kazoo 2.x) so its blocking read ends now."""
    sock: Any = getattr(getattr(client, "_connection", None), "_socket", None)
    with contextlib.suppress(OSError, AttributeError):  # closed already, or kazoo changed
        sock.shutdown(socket.SHUT_RDWR)


def _stop(client: Any) -> None:
    """Close a kazoo client: end the session, join its threads, close its sockets."""
    with contextlib.suppress(Exception):  # a session that could not even start
        client.stop()
    client.close()
