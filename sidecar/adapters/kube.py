"""The only door to the Kubernetes API (kubernetes-asyncio), for the agent and the injector.

The agent reads its pod, watches its EndpointSlices and posts Events; the injector reads (or
makes) each namespace's hook-token Secret and lists its Services.

Nothing here connects, or even imports the client, before the first call: in steady state a
pod costs the API server nothing (docs/kubernetes.md, "When it connects").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.errors import ApiError, MalformedAnswerError, truncate
from sidecar.model.rotation import SERVICE_LABEL, Slice, parse_slice
from sidecar.model.watch_event import Bookmark, Lines, Skipped, Update, WatchError, read_line

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from sidecar.settings import KubernetesSettings, PodIdentity

log = structlog.get_logger(__name__)

#: The first retry after a failed list or a broken watch; doubled each time up to the cap.
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 2.0


class _Connection:
    """One lazily opened API client and its request helper, shared by the agent and the injector."""

    def __init__(self, settings: KubernetesSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _api(self) -> Any:
        async with self._lock:
            if self._client is None:
                # Imported here, and off the loop: the client is heavy (about 0.25 s of
                # imports), and only a shutdown needs it.
                client, config = await asyncio.to_thread(_import_client)
                configuration = client.Configuration()
                try:
                    if self._settings.kubeconfig:
                        await config.load_kube_config(
                            config_file=self._settings.kubeconfig,
                            client_configuration=configuration,
                        )
                    else:
                        config.load_incluster_config(client_configuration=configuration)
                except Exception as e:
                    raise ApiError("configuration", None, f"{type(e).__name__}: {e}") from e
                self._client = client.ApiClient(configuration=configuration)
            return self._client

    async def close(self) -> None:
        """Close the connection pool, if one was opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        stream_seconds: float | None = None,
    ) -> Any:
        """One request through the client's REST layer; JSON in, JSON out, errors as ApiError.

        With `stream_seconds`, the response itself once its headers say 2xx, left open to be
        read for up to that long (a watch).
        """
        api = await self._api()
        timeout = self._settings.request_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                response = await api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params={
                        "Accept": "application/json",
                        "Content-Type": "application/json",
                    },
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=stream_seconds or timeout,
                )
                ok = 200 <= response.status <= 299
                if ok and stream_seconds is not None:
                    return response
                try:
                    text = await response.text(errors="strict" if ok else "replace")
                finally:
                    response.release()
        except TimeoutError:
            raise ApiError(what, None, f"no answer within {timeout} s") from None
        except Exception as e:
            raise ApiError(what, None, f"{type(e).__name__}: {e}") from e
        if not ok:
            raise ApiError(what, response.status, f"HTTP {response.status}: {truncate(text)}")
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(what, response.status, f"not JSON: {truncate(text)}") from None


class KubeApi(_Connection):
    """Reads our pod, lists and watches our EndpointSlices, posts Events on our pod."""

    def __init__(self, settings: KubernetesSettings, pod: PodIdentity) -> None:
        super().__init__(settings)
        self._pod = pod
        #: Watch lines that were no usable event (each led to a fresh list), since the start.
        self.skipped_watch_events = 0

    # -- what the phases need -------------------------------------------------------------

    async def read_pod(self) -> dict[str, Any]:
        """Our pod as the API server has it now."""
        pod = self._pod
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        doc = await self._call("get pod", "GET", path)
        if not isinstance(doc, dict):
            raise ApiError("get pod", 200, "expected a Pod object")
        return doc

    async def list_slices(self, services: frozenset[str] | None = None) -> tuple[list[Slice], str]:
        """EndpointSlices in our namespace (of those Services only, if given) and the list's RV."""
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self._pod.namespace}/endpointslices"
        query = [("labelSelector", _selector(services))] if services else []
        doc = await self._call("list endpointslices", "GET", path, query=query)
        try:
            revision = str(doc["metadata"]["resourceVersion"])
            items = doc.get("items") or []
            return [parse_slice(item) for item in items], revision
        except (KeyError, TypeError, AttributeError, MalformedAnswerError) as e:
            raise ApiError("list endpointslices", 200, f"malformed list: {e}") from e

    async def slice_snapshots(
        self, services: frozenset[str], first: list[Slice], revision: str, deadline: float
    ) -> AsyncIterator[list[Slice]]:
        """Every state of those Services' slices, from `first` on, until the caller stops.

        One watch for all of them (a set-based service-name selector) from the list's
        revision. When it ends (timeout, drop, silence, ERROR 410) it is replaced by a fresh
        list and watch, with backoff, until `deadline` (loop time). A refusal (401/403) ends
        the iteration with ApiError: retrying cannot help.
        """
        loop = asyncio.get_running_loop()
        current = {s.name: s for s in first}
        retry = _RETRY_FIRST_SECONDS
        relist = False
        while loop.time() < deadline:
            watch_started = loop.time()
            try:
                if relist:
                    slices, revision = await self.list_slices(services)
                    current = {s.name: s for s in slices}
                    yield list(current.values())
                relist = False
                async with contextlib.aclosing(self._watch(services, revision, deadline)) as events:
                    async for event in events:
                        if isinstance(event, Skipped):
                            # It may have been an update: only a fresh list can tell.
                            self._skipped(event)
                            relist = True
                            break
                        revision = event.revision or revision
                        if isinstance(event, Update):
                            _apply(current, event)
                            retry = _RETRY_FIRST_SECONDS
                            yield list(current.values())
            except ApiError as e:
                if e.forbidden:
                    raise
                log.info("slice_watch_restarting", reason=str(e))
                relist = True
            # A clean end at the server's timeout: watch again from the last revision (E8).
            if (
                not relist
                and loop.time() - watch_started >= self._settings.watch_inactivity_seconds / 2
            ):
                continue
            relist = True
            await asyncio.sleep(max(0.0, min(retry, deadline - loop.time())))
            retry = min(retry * 2, _RETRY_MAX_SECONDS)

    def _skipped(self, event: Skipped) -> None:
        self.skipped_watch_events += 1
        total = self.skipped_watch_events
        log.warning("slice_watch_event_skipped", reason=event.reason, skipped_total=total)

    async def _watch(
        self, services: frozenset[str], revision: str, deadline: float
    ) -> AsyncGenerator[Update | Bookmark | Skipped]:
        """The events of one watch, line by line; ends cleanly or raises ApiError (410 too).

        The lines are read here rather than by the client's Watch, which hands back the raw
        text of a line it cannot parse (kubernetes-behaviour E2).
        """
        loop = asyncio.get_running_loop()
        silence = self._settings.watch_inactivity_seconds
        server_timeout = max(1, int(min(silence, deadline - loop.time())))
        query = [
            ("watch", "true"),
            ("labelSelector", _selector(services)),
            ("resourceVersion", revision),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(server_timeout)),
        ]
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self._pod.namespace}/endpointslices"
        stream_seconds = server_timeout + silence
        what = "watch endpointslices"
        response = await self._call(what, "GET", path, query=query, stream_seconds=stream_seconds)
        try:
            lines = Lines()
            while True:
                data = await self._read(response, silence)
                if not data:  # the end; a last line without its newline was cut short
                    if (rest := lines.end()) is not None:
                        yield Skipped(f"{_reason(read_line(rest))}, on a last line cut short")
                    return
                for line in lines.feed(data):
                    event = read_line(line)
                    if isinstance(event, WatchError):
                        raise ApiError(what, event.code, event.message)
                    yield event
        finally:
            response.close()

    @staticmethod
    async def _read(response: Any, silence: float) -> bytes:
        """The next bytes of a stream (b"" at its end); silence or a drop is ApiError."""
        try:
            async with asyncio.timeout(silence + 1):
                data: bytes = await response.content.readany()
        except TimeoutError:
            raise ApiError("watch endpointslices", None, f"silent for {silence} s") from None
        except Exception as e:
            raise ApiError("watch endpointslices", None, f"{type(e).__name__}: {e}") from e
        return data

    async def post_event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """An Event on our pod (core/v1), as `kubectl describe pod` shows them."""
        pod = self._pod
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"name": f"{pod.name}.{time.time_ns():x}", "namespace": pod.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.name,
                "namespace": pod.namespace,
                "uid": pod.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "shutdown-coordinator"},
            "reportingComponent": "shutdown-coordinator",
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        path = f"/api/v1/namespaces/{pod.namespace}/events"
        await self._call("create event", "POST", path, body=body)


class InjectorApi(_Connection):
    """The injector's calls: a namespace's hook-token Secret (read, or made) and its Services."""

    async def hook_token(self, namespace: str, name: str, key: str, *, create: bool) -> str:
        """The text under `key` of the Secret `name` in `namespace`.

        When the Secret is absent and `create` holds (never for a dry-run review), it is created
        with a random token. If someone else created it in between (409 AlreadyExists: another
        replica answering a review of the same namespace), theirs is read and returned. Any other
        failure is ApiError; `status` 404 means absent and not created.
        """
        path = f"/api/v1/namespaces/{namespace}/secrets"
        try:
            return _secret_value(await self._call("get secret", "GET", f"{path}/{name}"), key)
        except ApiError as e:
            if e.status != 404 or not create:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": SECRET_LABELS},
            "type": "Opaque",
            "data": {key: base64.b64encode(new_token().encode()).decode()},
        }
        try:
            made = await self._call("create secret", "POST", path, body=body)
        except ApiError as e:
            if e.status != 409:
                raise
            # Created since our read: the first writer's token is the namespace's token.
            made = await self._call("get secret", "GET", f"{path}/{name}")
        return _secret_value(made, key)

    async def service_selectors(self, namespace: str) -> dict[str, dict[str, str]]:
        """Each Service of the namespace by name, with its selector (empty when it has none)."""
        doc = await self._call("list services", "GET", f"/api/v1/namespaces/{namespace}/services")
        try:
            return {
                item["metadata"]["name"]: dict((item.get("spec") or {}).get("selector") or {})
                for item in doc.get("items") or []
            }
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ApiError("list services", 200, f"malformed list: {e!r}") from e

    async def post_pod_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        """A Warning Event on someone's pod (the deletion webhook's, at a pod's cap)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "shutdown-coordinator-injector"},
            "reportingComponent": "shutdown-coordinator-injector",
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call(
            "create event", "POST", f"/api/v1/namespaces/{namespace}/events", body=body
        )


#: The labels of a token Secret the injector creates.
SECRET_LABELS = {
    "app.kubernetes.io/managed-by": "shutdown-coordinator-injector",
    "app.kubernetes.io/part-of": "shutdown-coordinator",
}
#: Random bytes in a created token; URL-safe base64 makes 32 characters of a header value.
TOKEN_BYTES = 24


def new_token() -> str:
    """A fresh hook token: 24 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def _secret_value(doc: Any, key: str) -> str:
    """The text under `key` in a Secret object; ApiError when it is not there or not text."""
    data = doc.get("data") if isinstance(doc, dict) else None
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise ApiError("get secret", 200, f"the Secret has no key {truncate(repr(key), 80)}")
    try:
        return base64.b64decode(value, validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ApiError("get secret", 200, f"key {truncate(repr(key), 80)} is not text") from None


def _apply(current: dict[str, Slice], update: Update) -> None:
    """Apply one watch update to the slices, by name."""
    if update.deleted:
        current.pop(update.slice.name, None)
    else:
        current[update.slice.name] = update.slice


def _reason(event: object) -> str:
    """Why a last line without its newline is skipped, even if it parsed: the stream was cut."""
    return event.reason if isinstance(event, Skipped) else "an event without its newline"


def _import_client() -> tuple[Any, Any]:
    """The client's modules; run in a thread, so that the imports do not hold up the loop."""
    return (
        importlib.import_module("kubernetes_asyncio.client"),
        importlib.import_module("kubernetes_asyncio.config"),
    )


def _selector(services: frozenset[str]) -> str:
    return f"{SERVICE_LABEL} in ({','.join(sorted(services))})"
