"""The Nacos registry: one instance marked down, deregistered and read back over the HTTP API.

Every step reads the instance's detail first (`GET .../instance` for its ip and port), the one read
that also sees disabled instances (lists hide them) and answers an error for a missing one. The
facts relied on, with their sources, are in docs/registries/nacos.md.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from sidecar.adapters.session import LazySession
from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.http_action import render
from sidecar.model.registry import Answer, Presence

if TYPE_CHECKING:
    from sidecar.model.http_action import Identity
    from sidecar.settings.registry_nacos import NacosRegistrySettings

#: At most this much of an answer is read.
BODY_LIMIT_BYTES = 64 * 1024
#: A token is renewed this long before Nacos says it expires (at most half its lifetime).
TOKEN_MARGIN_SECONDS = 30.0
#: Nacos's default token lifetime (nacos.core.auth.plugin.nacos.token.expire.seconds).
DEFAULT_TOKEN_TTL_SECONDS = 18000.0
#: The v2/v3 detail of a missing instance: HTTP 404 with this code (ErrorCode.RESOURCE_NOT_FOUND).
RESOURCE_NOT_FOUND = 20004
#: The v1 detail of a missing instance: HTTP 404 with one of these texts (getInstance0).
_V1_MISSING = ("no matched ip found", "no ips found")


@dataclass(frozen=True)
class _Paths:
    """Where each call goes, below the server URL, for one API version."""

    detail: str
    update: str
    deregister: str
    force: str
    login: str


def _one_path(instance: str, login: str) -> _Paths:
    return _Paths(instance, instance, instance, instance, login)


_PATHS = {
    "v1": _one_path("/v1/ns/instance", login="/v1/auth/login"),
    "v2": _one_path("/v2/ns/instance", login="/v1/auth/login"),
    "v3": _Paths(
        detail="/v3/admin/ns/instance",
        update="/v3/admin/ns/instance",
        deregister="/v3/client/ns/instance",
        force="/v3/admin/ns/instance",
        login="/v3/auth/user/login",
    ),
}


class NacosRegistry:
    """One Nacos instance; its own aiohttp session, opened at the first call."""

    def __init__(self, settings: NacosRegistrySettings, pod: Identity, *, key: str) -> None:
        self._settings = settings
        self._paths = _PATHS[settings.api_version]
        self._v1 = settings.api_version == "v1"
        if bool(settings.username_file) != bool(settings.password_file):
            raise ConfigError(f"{key}: expected both username_file and password_file, or neither")
        self._id: dict[str, str] = {
            "serviceName": render(settings.service_name, pod, "text", f"{key}.service_name"),
            "groupName": render(settings.group_name, pod, "text", f"{key}.group_name"),
            "clusterName": render(settings.cluster_name, pod, "text", f"{key}.cluster_name"),
            "ip": render(settings.ip, pod, "text", f"{key}.ip"),
            "port": str(settings.port),
        }
        if settings.namespace_id:
            namespace = render(settings.namespace_id, pod, "text", f"{key}.namespace_id")
            self._id["namespaceId"] = namespace
        self._ephemeral = "true" if settings.ephemeral else "false"
        self._what = f"{self._id['ip']}:{settings.port} of {self._id['serviceName']}"
        self._http = LazySession()
        self._token: str | None = None
        self._token_expires = 0.0

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._settings.name

    @property
    def can_mark_down(self) -> bool:
        """Whether announce updates the instance (`mark_down` is not `none`)."""
        return self._settings.mark_down != "none"

    @property
    def can_force(self) -> bool:
        """Always: a second DELETE (v3: through the admin API), read back at once."""
        return True

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    async def mark_down(self, deadline: float) -> None:
        """Update the instance to enabled=false (or weight 0), keeping its weight and metadata.

        An update replaces the instance's weight and metadata overrides, so both are read first
        and sent back as they were. Heartbeats never touch `enabled` or the weight, and the
        override outlives a re-registration. Nothing registered: nothing to mark down.
        """
        detail = await self._detail(deadline)
        if detail is None:
            return
        params = {**self._id, "ephemeral": self._ephemeral}
        weight = detail.get("weight", 1.0)
        params["weight"] = str(weight if isinstance(weight, int | float) else 1.0)
        params["enabled"] = "false"
        if self._settings.mark_down == "weight":
            params["weight"], params["enabled"] = "0", _enabled(detail)
        metadata = detail.get("metadata")
        if isinstance(metadata, dict) and metadata:
            params["metadata"] = json.dumps(metadata)
        status, body = await self._call("PUT", self._paths.update, params, deadline)
        self._expect_ok("mark_down", "PUT", self._paths.update, status, body)

    async def deregister(self, deadline: float) -> Answer:
        """DELETE the instance; GONE when its detail says there is none.

        Nacos answers `ok` to a DELETE whether or not the instance exists, so the detail read
        before it is what tells "already absent".
        """
        if await self._detail(deadline) is None:
            return Answer.GONE
        await self._delete(self._paths.deregister, "deregister", deadline)
        return Answer.OK

    async def is_present(self, deadline: float) -> Presence:
        """The instance's detail: PRESENT, or ABSENT on Nacos's "not found" answer."""
        return Presence.ABSENT if await self._detail(deadline) is None else Presence.PRESENT

    async def force_remove(self, deadline: float) -> None:
        """DELETE again (v3: the admin API) and read back; still there is an error naming why."""
        await self._delete(self._paths.force, "force_remove", deadline)
        if await self._detail(deadline) is None:
            return
        why = (
            "a live client re-registers a deleted ephemeral instance (an HTTP beat registers a "
            "missing instance; gRPC clients redo their registration); it goes once the app stops"
            if self._settings.ephemeral
            else "something registered the persistent instance again"
        )
        raise AdapterError(f"{self.name}: {self._what} is still registered after DELETE: {why}")

    async def _delete(self, path: str, step: str, deadline: float) -> None:
        params = {**self._id, "ephemeral": self._ephemeral}
        status, body = await self._call("DELETE", path, params, deadline)
        self._expect_ok(step, "DELETE", path, status, body)

    async def _detail(self, deadline: float) -> dict[str, Any] | None:
        """The instance's detail, or None when Nacos says there is no such instance."""
        path = self._paths.detail
        status, body = await self._call("GET", path, self._id, deadline)
        parsed = _json(body)
        if status == 200:
            data = parsed if self._v1 else _data(parsed)
            if isinstance(data, dict):
                return data
        if status == 404 and self._missing(parsed, body):
            return None
        raise self._error("read", "GET", path, status, body)

    def _missing(self, parsed: Any, body: str) -> bool:
        """Whether a 404 is Nacos's "no such instance", not a proxy's or a wrong path's 404."""
        if self._v1:
            return any(m in body for m in _V1_MISSING)
        return isinstance(parsed, dict) and parsed.get("code") == RESOURCE_NOT_FOUND

    def _expect_ok(self, step: str, method: str, path: str, status: int, body: str) -> None:
        parsed = _json(body)
        if status == 200 and (
            body.strip() == "ok"
            if self._v1
            else isinstance(parsed, dict) and parsed.get("code") == 0
        ):
            return
        raise self._error(step, method, path, status, body)

    def _error(self, step: str, method: str, path: str, status: int, body: str) -> AdapterError:
        hint = ""
        if status == 410:
            hint = " (Nacos 3 turns the v1/v2 admin API off by default: use api_version v3)"
        elif status == 404 and not _json_has_code(body):
            version = self._settings.api_version
            hint = f" (no such endpoint: does this server speak api_version {version}?)"
        return AdapterError(
            f"{self.name}: {step} {method} {path}: HTTP {status}{hint}: {truncate(body.strip())}"
        )

    async def _call(
        self, method: str, path: str, params: dict[str, str], deadline: float
    ) -> tuple[int, str]:
        """One request with the access token; a 403 renews the token once and tries again."""
        if not self._settings.username_file:
            return await self._send(method, path, params, deadline)
        for renewed in (False, True):
            token = await self._access_token(deadline, renew=renewed)
            status, body = await self._send(
                method, path, {**params, "accessToken": token}, deadline
            )
            if status != 403:
                break
        return status, body

    async def _access_token(self, deadline: float, *, renew: bool) -> str:
        """The token from the last login, or a new one when it is expired, near it, or refused."""
        now = asyncio.get_running_loop().time()
        if self._token is not None and not renew and now < self._token_expires:
            return self._token
        self._token = None
        credentials = {
            "username": _secret(self._settings.username_file, "username_file", self.name),
            "password": _secret(self._settings.password_file, "password_file", self.name),
        }
        path = self._paths.login
        status, body = await self._send("POST", path, {}, deadline, form=credentials)
        parsed = _json(body)
        token = parsed.get("accessToken") if isinstance(parsed, dict) else None
        if status != 200 or not isinstance(token, str) or not token:
            raise self._error("login", "POST", path, status, body)
        ttl = parsed.get("tokenTtl") if isinstance(parsed, dict) else None
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else DEFAULT_TOKEN_TTL_SECONDS
        self._token, self._token_expires = token, now + max(ttl - TOKEN_MARGIN_SECONDS, ttl / 2)
        return token

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        deadline: float,
        *,
        form: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Send one request before the deadline; errors name the path, never the query."""
        what = f"{self.name}: {method} {path}"
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AdapterError(f"{what}: no time left before the deadline")
        timeout = min(self._settings.timeout_seconds, left)
        url = URL(self._settings.server_url + path).with_query(params)
        try:
            async with self._http.get().request(
                method,
                url,
                data=form,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(BODY_LIMIT_BYTES)
                return response.status, body.decode("utf-8", "replace")
        except TimeoutError as e:
            raise AdapterError(f"{what}: no answer within {timeout:.3g} s") from e
        except aiohttp.ClientError as e:
            text = str(e).replace(params["accessToken"], "***") if "accessToken" in params else e
            raise AdapterError(f"{what}: {type(e).__name__}: {text}") from e


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _json_has_code(body: str) -> bool:
    parsed = _json(body)
    return isinstance(parsed, dict) and "code" in parsed


def _data(parsed: Any) -> Any:
    """The `data` of a v2/v3 answer `{"code": 0, "message": "success", "data": ...}`."""
    if isinstance(parsed, dict) and parsed.get("code") == 0:
        return parsed.get("data")
    return None


def _enabled(detail: dict[str, Any]) -> str:
    """The instance's `enabled` as a parameter (v1 and v2 details do not show it: true)."""
    return "false" if detail.get("enabled") is False else "true"


def _secret(path: str, key: str, name: str) -> str:
    """A credential from a mounted Secret file, read at each login so a rotation is picked up."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise AdapterError(f"{name}: cannot read {key} {path}: {type(e).__name__}") from e
    if not value:
        raise AdapterError(f"{name}: {key} {path} is empty")
    return value
