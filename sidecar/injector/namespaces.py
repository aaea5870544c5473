"""What the injector asks the API about a namespace: its hook token and its Services, cached."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_type_hints

import structlog

from sidecar.errors import ApiError, ConfigError
from sidecar.settings.reader import INVALID, Reader
from sidecar.settings.schema import ServerSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Mapping

    from sidecar.adapters.kube import InjectorApi
    from sidecar.settings.injection import InjectionTemplate

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: A token changes only when someone rotates the Secret, and re-injection follows a rotation.
TOKEN_TTL_SECONDS = 60.0
#: Services come and go with workloads; the warning is advice, so a short staleness is fine.
SERVICES_TTL_SECONDS = 10.0
#: Namespaces remembered per cache; the least recently used one goes first.
CACHE_MAX_NAMESPACES = 512
#: Each API request; the API server answers a get or a list of one namespace in milliseconds.
REQUEST_SECONDS = 1.0
#: All lookups of one review, below the webhook's 3 s for a plan (sidecar/injector/server.py).
LOOKUP_SECONDS = 2.5

_STATUS_WORDS = {401: "unauthorized", 403: "forbidden", 404: "not found"}


class NamespaceLookupError(Exception):
    """A lookup failed; the message is the cause, short enough for an admission warning."""


class Cache(Generic[T]):
    """Values by key for `ttl_seconds`, at most `max_entries`; one load per key at a time.

    Callers asking while a key loads wait for that load and share its value or its failure,
    so a burst of pods in one namespace costs one API call. Failures are not kept.
    """

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = CACHE_MAX_NAMESPACES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._values: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The fresh value of `key`, loaded by `load` when missing or stale."""
        kept = self._values.get(key)
        if kept is not None and kept[0] > self._clock():
            self._values.move_to_end(key)
            return kept[1]
        loading = self._loading.get(key)
        if loading is not None:
            # Shielded: a waiter cut short by its own timeout leaves the load to the others.
            return await asyncio.shield(loading)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as e:
            shared = (
                e if isinstance(e, Exception) else NamespaceLookupError("the lookup was cancelled")
            )
            future.set_exception(shared)
            future.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        self._values[key] = (self._clock() + self._ttl_seconds, value)
        self._values.move_to_end(key)
        while len(self._values) > self._max_entries:
            self._values.popitem(last=False)
        return value


class Namespaces:
    """Each namespace's hook token (its Secret, made when absent) and Services, for reviews."""

    def __init__(
        self,
        api: InjectorApi,
        template: InjectionTemplate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._secret = template.token_secret
        self._key = template.token_secret_key
        self._tokens: Cache[str] = Cache(TOKEN_TTL_SECONDS, clock=clock)
        self._services: Cache[dict[str, dict[str, str]]] = Cache(SERVICES_TTL_SECONDS, clock=clock)

    async def token(self, namespace: str, *, create: bool) -> str:
        """The namespace's hook token, checked by the agent's rule, or NamespaceLookupError.

        With `create` (a review that is not a dry run) an absent Secret is created.
        """
        where = f"Secret {namespace}/{self._secret}"

        async def load() -> str:
            try:
                text = await self._api.hook_token(namespace, self._secret, self._key, create=create)
            except ApiError as e:
                log.warning("hook_token_failed", namespace=namespace, error=str(e))
                if e.status == 404 and not create:
                    raise NamespaceLookupError(
                        f"{where} not found; a dry run creates nothing"
                    ) from e
                raise NamespaceLookupError(f"{where}: {describe(e)}") from e
            try:
                return token_from_text(text, f"{where} key {self._key!r}")
            except ConfigError as e:
                raise NamespaceLookupError(str(e)) from e

        return await self._tokens.get((namespace, create), load)

    async def services(self, namespace: str) -> dict[str, dict[str, str]]:
        """The namespace's Services and their selectors, or NamespaceLookupError."""

        async def load() -> dict[str, dict[str, str]]:
            try:
                return await self._api.service_selectors(namespace)
            except ApiError as e:
                log.warning("services_lookup_failed", namespace=namespace, error=str(e))
                raise NamespaceLookupError(describe(e)) from e

        return await self._services.get(namespace, load)

    async def close(self) -> None:
        """Close the API connection."""
        await self._api.close()


def selected_by_any(pod: Mapping[str, Any], services: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether a Service selects the pod's labels; one without a selector selects nothing."""
    metadata = pod.get("metadata")
    labels = (metadata.get("labels") if isinstance(metadata, dict) else None) or {}
    if not isinstance(labels, dict):
        return False
    return any(
        selector and all(labels.get(k) == v for k, v in selector.items())
        for selector in services.values()
    )


def describe(error: ApiError) -> str:
    """An API failure in a few words: the call and the status, or what happened instead."""
    if error.status is None or error.status == 200:  # nothing answered, or a bad answer
        return str(error)
    what = str(error).split(":", 1)[0]
    return f"{what}: {_STATUS_WORDS.get(error.status, f'HTTP {error.status}')}"


def token_from_text(text: str, source: str) -> str:
    """The hook token in `text`, checked by the agent's own rule; ConfigError says what is wrong."""
    reader = Reader({})
    token = reader.read(get_type_hints(ServerSettings, include_extras=True)["token"], text, source)
    if token is INVALID or reader.errors:
        raise ConfigError(next(iter(reader.errors.values())))
    return str(token)
