"""The etcd v3 registry: an instance's key (or prefix) removed through etcd's JSON gRPC gateway.

Keys and values travel base64-encoded; proto3 JSON leaves out zero values (no `count` means 0, no
`kvs` means none) and writes int64 fields as strings (docs/registries/etcd.md has the sources).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from sidecar.adapters.session import LazySession
from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.http_action import render
from sidecar.model.registry import Answer, Presence
from sidecar.settings.registry_etcd import etcd_problems

if TYPE_CHECKING:
    from sidecar.model.http_action import Identity
    from sidecar.settings.registry_etcd import EtcdRegistrySettings

#: At most this much of an answer is read (a keys-only range of a prefix, without values).
BODY_LIMIT_BYTES = 4 * 1024 * 1024
#: A range reads the leases of at most this many keys under a prefix.
RANGE_LIMIT = 1000
#: gRPC codes the gateway puts in an error body (google.golang.org/grpc/codes).
_NOT_FOUND, _PERMISSION_DENIED, _UNAUTHENTICATED = 5, 7, 16
#: etcd's ErrGRPCAuthOldRevision (InvalidArgument, HTTP 400): a JWT from before an auth change.
_OLD_AUTH_REVISION = "revision of auth store is old"
_AUTH_NOT_ENABLED = "authentication is not enabled"


class EtcdError(AdapterError):
    """etcd answered with an error: the HTTP status and the gRPC code of its body (0 if none)."""

    def __init__(self, message: str, status: int, code: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _b64(text: bytes) -> str:
    return base64.b64encode(text).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The `range_end` that makes a range cover every key starting with `prefix` (as clientv3)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:  # a byte that cannot be incremented
        end.pop()
    if not end:
        return b"\0"  # every key from `prefix` on
    end[-1] += 1
    return bytes(end)


class EtcdRegistry:
    """An instance in etcd: removed with deleterange, its leases revoked, read back by count.

    Mark-down writes a configured value to a configured key, without a lease, so the app's
    keep-alive cannot undo it; retire removes that key too. The session is opened at the first
    call; the token (with `username`) is fetched then, and again when etcd says it is invalid.
    """

    def __init__(self, settings: EtcdRegistrySettings, pod: Identity, *, key: str) -> None:
        problems = etcd_problems(settings)
        if problems:
            raise ConfigError(f"{key}.{problems[0]}")
        field = "key" if settings.key else "prefix"
        self._name = settings.name
        self._settings = settings
        self._key = render(getattr(settings, field), pod, "text", f"{key}.{field}").encode()
        self._range: dict[str, str] = {"key": _b64(self._key)}
        if settings.prefix:
            self._range["range_end"] = _b64(prefix_end(self._key))
        mark = render(settings.mark_down_key, pod, "text", f"{key}.mark_down_key").encode()
        self._mark = {
            "key": _b64(mark),
            "value": _b64(
                render(settings.mark_down_value, pod, "text", f"{key}.mark_down_value").encode()
            ),
        }
        # The mark-down key is removed with the instance unless the key or prefix covers it.
        covered = mark == self._key or (bool(settings.prefix) and mark.startswith(self._key))
        self._extra_delete = {"key": self._mark["key"]} if mark and not covered else None
        self._can_mark_down = bool(mark)
        self._endpoint = 0
        self._http = LazySession()
        self._token: str | None = None

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._name

    @property
    def can_mark_down(self) -> bool:
        """Whether a mark-down key is configured (etcd itself has no status to set)."""
        return self._can_mark_down

    @property
    def can_force(self) -> bool:
        """Whether retire may remove again, revoking every lease found."""
        return self._settings.force_remove

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        await self._http.close()

    async def mark_down(self, deadline: float) -> None:
        """Put the mark-down value at the mark-down key, with no lease."""
        if not self._can_mark_down:
            raise AdapterError(f"{self._name}: no mark_down_key configured")
        await self._call("put", "/kv/put", self._mark, deadline)

    async def deregister(self, deadline: float) -> Answer:
        """Read the keys' leases, delete the keys, revoke the leases; GONE if nothing was there."""
        leases = await self._leases(deadline) if self._settings.revoke_leases else set()
        deleted = await self._delete(deadline)
        for lease in sorted(leases):
            await self._revoke(lease, deadline)
        return Answer.OK if deleted or leases else Answer.GONE

    async def is_present(self, deadline: float) -> Presence:
        """Count the keys: none means absent; a refused read (403) proves nothing."""
        try:
            answer = await self._call(
                "range", "/kv/range", {**self._range, "count_only": True}, deadline
            )
        except EtcdError as e:
            if e.status == 403 or e.code == _PERMISSION_DENIED:  # Forbidden
                return Presence.UNKNOWN
            raise
        return Presence.PRESENT if _int(answer, "count") > 0 else Presence.ABSENT

    async def force_remove(self, deadline: float) -> None:
        """Revoke every lease found under the key (ending any keep-alive), then delete the keys."""
        for lease in sorted(await self._leases(deadline)):
            await self._revoke(lease, deadline)
        await self._delete(deadline)

    async def _leases(self, deadline: float) -> set[int]:
        """The leases the keys are attached to (0 means none)."""
        body = {**self._range, "keys_only": True, "limit": RANGE_LIMIT}
        answer = await self._call("range", "/kv/range", body, deadline)
        kvs = answer.get("kvs") or []
        if not isinstance(kvs, list) or not all(isinstance(kv, dict) for kv in kvs):
            raise AdapterError(f"{self._name}: etcd range: kvs is not a list of objects")
        return {lease for kv in kvs if (lease := _int(kv, "lease"))}

    async def _delete(self, deadline: float) -> int:
        """Delete the key (or every key under the prefix) and the mark-down key; how many were."""
        answer = await self._call("deleterange", "/kv/deleterange", self._range, deadline)
        if self._extra_delete is not None:
            await self._call("deleterange", "/kv/deleterange", self._extra_delete, deadline)
        return _int(answer, "deleted")

    async def _revoke(self, lease: int, deadline: float) -> None:
        """Revoke a lease; one already gone (expired, revoked) is fine."""
        try:
            await self._call("lease revoke", "/lease/revoke", {"ID": str(lease)}, deadline)
        except EtcdError as e:
            if e.code != _NOT_FOUND:
                raise

    async def _call(
        self, what: str, path: str, body: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        """POST to the gateway with the token; fetch a new token once if etcd refuses it."""
        if self._settings.username and self._token is None:
            await self._authenticate(deadline)
        try:
            return await self._post(what, path, body, deadline, token=self._token)
        except EtcdError as e:
            stale = e.code == _UNAUTHENTICATED or _OLD_AUTH_REVISION in str(e)
            if not (self._settings.username and stale):
                raise
        await self._authenticate(deadline)
        return await self._post(what, path, body, deadline, token=self._token)

    async def _authenticate(self, deadline: float) -> None:
        """A new token for `username`, with the password read from its file now."""
        self._token = None
        password = _read_secret(self._settings.password_file, self._name)
        body = {"name": self._settings.username, "password": password}
        try:
            answer = await self._post("authenticate", "/auth/authenticate", body, deadline)
        except EtcdError as e:
            if _AUTH_NOT_ENABLED in str(e):
                self._token = ""  # auth is off: requests go without a token
                return
            raise
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise AdapterError(f"{self._name}: etcd authenticate: no token in the answer")
        self._token = token

    async def _post(
        self,
        what: str,
        path: str,
        body: dict[str, Any],
        deadline: float,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """One request to the current endpoint; a failure to reach it moves to the next one."""
        endpoints = self._settings.endpoints
        url = f"{endpoints[self._endpoint]}{self._settings.api_prefix}{path}"
        call = f"{self._name}: etcd {what} {url}"
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AdapterError(f"{call}: no time left before the deadline")
        timeout = min(self._settings.timeout_seconds, left)
        try:
            async with self._http.get().post(
                url,
                json=body,
                headers={"Authorization": token} if token else None,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                status, raw = response.status, await response.content.read(BODY_LIMIT_BYTES)
        except (TimeoutError, aiohttp.ClientError) as e:
            self._endpoint = (self._endpoint + 1) % len(endpoints)
            if isinstance(e, TimeoutError):
                raise AdapterError(f"{call}: no answer within {timeout:.3g} s") from e
            raise AdapterError(f"{call}: {type(e).__name__}: {e}") from e
        text = raw.decode("utf-8", "replace")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if status != 200:  # the gateway's only success
            code = answer.get("code") if isinstance(answer, dict) else None
            code = code if isinstance(code, int) and not isinstance(code, bool) else 0
            raise EtcdError(f"{call}: HTTP {status}: {truncate(text.strip())}", status, code)
        if not isinstance(answer, dict):
            raise AdapterError(f"{call}: not a JSON object: {truncate(text.strip())}")
        return answer


def _int(message: dict[str, Any], field: str) -> int:
    """An int64 field of a proto3 JSON message: a string, or absent for zero."""
    value = message.get(field, 0)
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise AdapterError(f"etcd answer: {field} is not an integer: {value!r}") from e


def _read_secret(path: str, registry: str) -> str:
    """A mounted Secret's content, stripped; the error names the file, never the content."""
    # A small local file: reading it inline is cheaper than a thread.
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise AdapterError(
            f"{registry}: cannot read password_file {path}: {type(e).__name__}"
        ) from e
