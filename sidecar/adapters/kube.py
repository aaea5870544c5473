"""The agent's only door to the Kubernetes API (kubernetes-asyncio): our pod, our slices, Events.

Nothing here connects, or even imports the client, before the first call: in steady state a
pod costs the API server nothing (docs/kubernetes.md, "When it connects").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.errors import ApiError, MalformedAnswerError, truncate
from sidecar.model.rotation import SERVICE_LABEL, Slice, parse_slice

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sidecar.settings import KubernetesSettings, PodIdentity

log = structlog.get_logger(__name__)

#: The first retry after a failed list or a broken watch; doubled each time up to the cap.
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 2.0


class KubeApi:
    """Reads our pod, lists and watches our EndpointSlices, posts Events on our pod."""

    def __init__(self, settings: KubernetesSettings, pod: PodIdentity) -> None:
        self._settings = settings
        self._pod = pod
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _api(self) -> Any:
        async with self._lock:
            if self._client is None:
                # Imported here: the client is heavy, and only a shutdown needs it.
                from kubernetes_asyncio import client, config  # noqa: PLC0415

                configuration = client.Configuration()
                try:
                    if self._settings.kubeconfig:
                        await config.load_kube_config(
                            config_file=self._settings.kubeconfig,
                            client_configuration=configuration,
                        )
                    else:
                        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
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
    ) -> Any:
        """One request through the client's REST layer; JSON in, JSON out, errors as ApiError."""
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
                    _request_timeout=timeout,
                )
                try:
                    text = await response.text()
                finally:
                    response.release()
        except TimeoutError:
            raise ApiError(what, None, f"no answer within {timeout} s") from None
        except Exception as e:
            raise ApiError(what, None, f"{type(e).__name__}: {e}") from e
        if not 200 <= response.status <= 299:
            raise ApiError(what, response.status, f"HTTP {response.status}: {truncate(text)}")
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(what, response.status, f"not JSON: {truncate(text)}") from None

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
                async for event_type, obj in self._watch(services, revision, deadline):
                    revision = obj.get("metadata", {}).get("resourceVersion") or revision
                    if _apply(current, event_type, obj):
                        retry = _RETRY_FIRST_SECONDS
                        yield list(current.values())
            except ApiError as e:
                if e.forbidden:
                    raise
                log.info("slice_watch_restarting", reason=str(e))
            except MalformedAnswerError as e:
                log.warning("slice_watch_restarting", reason=f"malformed event: {e}")
            else:
                # A clean end at the server's timeout: watch again from the last revision (E8).
                if loop.time() - watch_started >= self._settings.watch_inactivity_seconds / 2:
                    relist = False
                    continue
            relist = True
            await asyncio.sleep(max(0.0, min(retry, deadline - loop.time())))
            retry = min(retry * 2, _RETRY_MAX_SECONDS)

    async def _watch(
        self, services: frozenset[str], revision: str, deadline: float
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) of one watch; ends cleanly or raises ApiError (410 included)."""
        from kubernetes_asyncio import client, watch  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        silence = self._settings.watch_inactivity_seconds
        api = client.DiscoveryV1Api(await self._api())
        server_timeout = max(1, int(min(silence, deadline - loop.time())))
        stream = watch.Watch(return_type="object").stream(
            api.list_namespaced_endpoint_slice,
            self._pod.namespace,
            label_selector=_selector(services),
            resource_version=revision,
            allow_watch_bookmarks=True,
            timeout_seconds=server_timeout,
            _request_timeout=server_timeout + silence,
        )
        try:
            while True:
                try:
                    async with asyncio.timeout(silence + 1):
                        event = await stream.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ApiError(
                        "watch endpointslices", None, f"silent for {silence} s"
                    ) from None
                except Exception as e:
                    status = getattr(e, "status", None)
                    raise ApiError(
                        "watch endpointslices", status, f"{type(e).__name__}: {e}"
                    ) from e
                raw = event.get("raw_object")
                if not isinstance(raw, dict):
                    raise MalformedAnswerError(f"watch event without an object: {event!r:.80}")
                yield str(event.get("type")), raw
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

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


def _apply(current: dict[str, Slice], event_type: str, obj: dict[str, Any]) -> bool:
    """Apply one watch event to the slices by name; False when nothing changed (a bookmark)."""
    if event_type == "BOOKMARK":
        return False
    changed = parse_slice(obj)
    if event_type == "DELETED":
        current.pop(changed.name, None)
    else:
        current[changed.name] = changed
    return True


def _selector(services: frozenset[str]) -> str:
    return f"{SERVICE_LABEL} in ({','.join(sorted(services))})"
