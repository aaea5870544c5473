"""Eureka over its REST API, on every peer: status override, delete, read back, delete again.

Each step is sent to every configured peer in parallel and the worst answer wins: peers replicate
to each other, but one that missed the replication keeps serving the instance. Paths are those of
eureka-core's ApplicationResource and InstanceResource under the clients' serviceUrl:

- mark down: `PUT {peer}/apps/{APP}/{id}/status?value=OUT_OF_SERVICE`, 200 (404: not there);
- deregister: `DELETE {peer}/apps/{APP}/{id}`, 200, or 404 for an unknown instance;
- read back: `GET {peer}/apps/{APP}/{id}` with `Accept: application/json`, 200 or 404;
- force: the deregister again, on every peer (Eureka has no separate admin API).

A delete also drops the status override, so a live client whose next heartbeat gets 404
re-registers UP: a peer that answered 200 to our delete and shows the instance again says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from sidecar.adapters.session import LazySession
from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.http_action import render
from sidecar.model.registry import Answer, Presence

if TYPE_CHECKING:
    from sidecar.model.http_action import Identity
    from sidecar.settings.registry_eureka import EurekaRegistrySettings

#: At most this much of an answer is read: an instance's JSON is a few kilobytes.
BODY_LIMIT_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Reply:
    """One peer's answer: its status and body, or what went wrong (status None)."""

    peer: str
    status: int | None
    body: str = ""
    problem: str = ""

    def __str__(self) -> str:
        if self.status is None:
            return f"{self.peer}: {self.problem}"
        body = truncate(self.body.strip(), 120)
        return f"{self.peer}: HTTP {self.status}" + (f" {body}" if body else "")


class EurekaRegistry:
    """One instance of one app, on every Eureka peer.

    The app name and instance id are rendered once, here: a template this pod cannot fill is a
    ConfigError naming the key at start. The HTTP session is made at the first call.
    """

    def __init__(
        self, settings: EurekaRegistrySettings, pod: Identity, *, key: str = "registries[0]"
    ) -> None:
        if bool(settings.username) != bool(settings.password_file):
            raise ConfigError(f"{key}: expected both username and password_file, or neither")
        if not settings.peers:
            raise ConfigError(f"{key}.peers: expected at least one Eureka server URL")
        self._settings = settings
        self._app = render(settings.app, pod, "text", f"{key}.app").upper()
        self._id = render(settings.instance_id, pod, "text", f"{key}.instance_id")
        path = f"/apps/{quote(self._app, safe='')}/{quote(self._id, safe='')}"
        self._urls = {peer: peer.rstrip("/") + path for peer in settings.peers}
        self._http = LazySession()
        #: Peers whose delete answered 200: seeing the instance there again means re-registered.
        self._deleted: set[str] = set()
        #: What the last read saw on each peer where the instance was present.
        self._seen: dict[str, str] = {}

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._settings.name

    @property
    def instance(self) -> str:
        """`APP/instanceId` as Eureka knows it."""
        return f"{self._app}/{self._id}"

    @property
    def can_mark_down(self) -> bool:
        """Whether announce sets the OUT_OF_SERVICE override."""
        return self._settings.mark_down

    @property
    def can_force(self) -> bool:
        """Whether retire deletes again when the read-back still sees the instance."""
        return self._settings.force

    async def close(self) -> None:
        """Close the HTTP session, if one was made."""
        await self._http.close()

    async def mark_down(self, deadline: float) -> None:
        """Set the OUT_OF_SERVICE override on every peer; 404 there means nothing to mark."""
        replies = await self._each("PUT", "/status?value=OUT_OF_SERVICE", deadline)
        self._fail_unless(replies, {200, 404}, "mark_down")

    async def deregister(self, deadline: float) -> Answer:
        """Delete on every peer: OK if any peer removed it (now or before), GONE if none had it."""
        replies = await self._each("DELETE", "", deadline)
        # Recorded first: a peer that removed it now answers 404 when a later try is retried.
        self._deleted.update(r.peer for r in replies if r.status == 200)
        self._fail_unless(replies, {200, 404}, "deregister")
        return Answer.OK if self._deleted else Answer.GONE

    async def is_present(self, deadline: float) -> Presence:
        """Present if any peer has it, absent if every peer says 404, else raises naming them."""
        replies = await self._each("GET", "", deadline, accept_json=True)
        present = [r for r in replies if r.status == 200]
        self._seen = {r.peer: _describe(r.body) for r in present}
        if present:
            return Presence.PRESENT
        self._fail_unless(replies, {404}, "read")
        return Presence.ABSENT

    async def force_remove(self, deadline: float) -> None:
        """Delete again on every peer; raises if a peer had it again after our delete there."""
        again = {p for p in self._seen if p in self._deleted}
        replies = await self._each("DELETE", "", deadline)
        removed = {r.peer for r in replies if r.status == 200}
        back = sorted(again & removed)
        self._deleted.update(removed)
        self._fail_unless(replies, {200, 404}, "force")
        if back:
            where = "; ".join(f"{p}: {self._seen[p]}" for p in back)
            raise AdapterError(
                f"{self.name}: force {self.instance}: present again after our delete answered 200 "
                f"(re-registered, as a live client does when its heartbeat gets 404; deleted "
                f"again): {where}"
            )

    async def _each(
        self, method: str, suffix: str, deadline: float, *, accept_json: bool = False
    ) -> list[_Reply]:
        """Send one request to every peer in parallel; each reply, failures included."""
        headers = {"Accept": "application/json"} if accept_json else {}
        auth = self._authorization()
        if auth:
            headers["Authorization"] = auth
        session = self._http.get()
        calls = (
            _send(session, method, peer, url + suffix, headers, self._timeout(deadline))
            for peer, url in self._urls.items()
        )
        return list(await asyncio.gather(*calls))

    def _timeout(self, deadline: float) -> float:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AdapterError(f"{self.name}: no time left before the deadline")
        return min(self._settings.timeout_seconds, left)

    def _authorization(self) -> str:
        """`Basic ...` from the username and the password file (read at each call), or ''."""
        settings = self._settings
        if not settings.password_file:
            return ""
        # A small local file (a mounted Secret): reading it inline is cheaper than a thread.
        try:
            password = Path(settings.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise AdapterError(
                f"{self.name}: cannot read password_file {settings.password_file}: "
                f"{type(e).__name__}"
            ) from e
        if not password or any(c in password for c in "\r\n\0"):
            raise AdapterError(
                f"{self.name}: password_file {settings.password_file} is empty or has line breaks"
            )
        token = base64.b64encode(f"{settings.username}:{password}".encode()).decode("ascii")
        return f"Basic {token}"

    def _fail_unless(self, replies: list[_Reply], expected: set[int], step: str) -> None:
        """Raise naming every peer's answer unless each status is one of `expected`."""
        if all(r.status in expected for r in replies):
            return
        raise AdapterError(
            f"{self.name}: {step} {self.instance}: " + "; ".join(str(r) for r in replies)
        )


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    peer: str,
    url: str,
    headers: dict[str, str],
    timeout_seconds: float,
) -> _Reply:
    """One request to one peer; never raises, so the other peers' answers are kept."""
    try:
        async with session.request(
            method,
            URL(url, encoded=True),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            body = await response.content.read(BODY_LIMIT_BYTES)
            return _Reply(peer, response.status, body.decode("utf-8", "replace"))
    except TimeoutError:
        return _Reply(peer, None, problem=f"no answer within {timeout_seconds:.3g} s")
    except aiohttp.ClientError as e:
        return _Reply(peer, None, problem=f"{type(e).__name__}: {e}")


def _describe(body: str) -> str:
    """The status and registration time of an instance's JSON (`{"instance": {...}}`)."""
    try:
        instance: Any = json.loads(body)["instance"]
        status = instance.get("status", "?")
        registered = (instance.get("leaseInfo") or {}).get("registrationTimestamp", "?")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "present"
    return f"status {status}, registered at {registered} (ms)"
