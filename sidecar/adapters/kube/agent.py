"""The agent's API calls: its pod, its EndpointSlices (list and watch) and Events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

import structlog

from sidecar.adapters.kube.connection import Connection
from sidecar.errors import ApiError, MalformedAnswerError
from sidecar.model.rotation import SERVICE_LABEL, Slice, parse_slice
from sidecar.model.watch_event import Bookmark, Lines, Skipped, Update, WatchError, read_line

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from sidecar.settings import KubernetesSettings, PodIdentity

log = structlog.get_logger(__name__)

#: The first retry after a failed list or a broken watch; doubled each time up to the cap.
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 2.0


class KubeApi(Connection):
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


def _apply(current: dict[str, Slice], update: Update) -> None:
    """Apply one watch update to the slices, by name."""
    if update.deleted:
        current.pop(update.slice.name, None)
    else:
        current[update.slice.name] = update.slice


def _reason(event: object) -> str:
    """Why a last line without its newline is skipped, even if it parsed: the stream was cut."""
    return event.reason if isinstance(event, Skipped) else "an event without its newline"


def _selector(services: frozenset[str]) -> str:
    return f"{SERVICE_LABEL} in ({','.join(sorted(services))})"
