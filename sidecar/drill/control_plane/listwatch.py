"""List and watch over HTTP for the API stand-in (kubernetes-behaviour E1-E11).

It reads the store it is given; the server's settings and faults come with each request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.drill.control_plane.responses import (
    KINDS,
    Refused,
    invalid,
    number_param,
    status,
    true_param,
)
from sidecar.drill.control_plane.selectors import SelectorError, both, field_matcher, label_matcher
from sidecar.drill.control_plane.store import Expired, Watcher

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.drill.control_plane.faults import Faults
    from sidecar.drill.control_plane.store import Object, Store


@dataclass(frozen=True)
class WatchSettings:
    """The server's list and watch settings at the time of one request."""

    bookmark_interval_seconds: float
    #: E8: a watch without timeoutSeconds ends after [min, 2 x min) seconds.
    min_request_timeout_seconds: float
    #: E10: the WatchList feature gate.
    watch_list: bool
    #: E4: continue tokens expire after this long.
    continue_ttl_seconds: float


class ListWatch:
    """Serves the collections of a store: lists with paging, watches with their semantics."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: Watches answered with ERROR 410 (E5).
        self.expired_watches = 0

    async def serve(
        self, request: web.Request, resource: str, settings: WatchSettings, faults: Faults
    ) -> web.StreamResponse:
        """GET on one collection: a list, or a watch with `watch=true`."""
        query = request.query
        try:
            matches = both(
                label_matcher(query.get("labelSelector")),
                field_matcher(resource, query.get("fieldSelector")),
            )
        except SelectorError as e:
            return status(400, "BadRequest", str(e))
        ns = request.match_info.get("ns", "")
        try:
            if true_param(query.get("watch")):
                return await self._watch(request, resource, ns, matches, settings, faults)
            return self._list(query, resource, ns, matches, settings)
        except Refused as refused:
            return refused.response

    def _list(
        self,
        query: Any,
        resource: str,
        ns: str,
        matches: Callable[[Object], bool],
        settings: WatchSettings,
    ) -> web.Response:
        """E1, E4: a list with the revision to watch from; limit and continue."""
        if query.get("sendInitialEvents"):
            raise Refused(invalid("sendInitialEvents", "Forbidden: forbidden for list"))
        rv, match = query.get("resourceVersion"), query.get("resourceVersionMatch")
        if match and not rv:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs resourceVersion"))
        if match == "Exact" and rv != str(self._store.revision):
            # The stand-in keeps only the newest state, so only the newest revision is exact.
            raise Refused(status(410, "Expired", f"too old resource version: {rv}"))
        items = [o for o in self._store.items(resource, ns or None) if matches(o)]
        revision, start = str(self._store.revision), 0
        if query.get("continue"):
            revision, start = _continue_from(query["continue"], settings.continue_ttl_seconds)
        metadata: Object = {"resourceVersion": revision}
        limit = number_param(query, "limit", 0)
        page = items[start : start + int(limit)] if limit else items[start:]
        if limit and start + limit < len(items):
            token = {"rv": revision, "start": start + int(limit), "at": time.time()}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - int(limit)
        for item in page:  # I2: items need not carry kind and apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        apiversion, kind = KINDS[resource]
        return web.json_response(
            {"kind": f"{kind}List", "apiVersion": apiversion, "metadata": metadata, "items": page}
        )

    @staticmethod
    def _watch_options(query: Any, settings: WatchSettings) -> tuple[str, bool, bool, float]:
        """E3, E8, E10: (resourceVersion, initial events, bookmarks, lifetime), or Refused."""
        initial_events = true_param(query.get("sendInitialEvents"))
        match = query.get("resourceVersionMatch")
        if initial_events and not settings.watch_list:
            raise Refused(invalid("sendInitialEvents", "Forbidden: the WatchList feature is off"))
        if initial_events and match != "NotOlderThan":
            raise Refused(invalid("resourceVersionMatch", "Required value: NotOlderThan"))
        if match and not initial_events:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs sendInitialEvents"))
        rv = query.get("resourceVersion", "")
        if rv not in {"", "0"} and not rv.isdigit():
            raise Refused(status(400, "BadRequest", f"resourceVersion: invalid value {rv!r:.30}"))
        lifetime = number_param(query, "timeoutSeconds", 0)
        if lifetime <= 0:  # E8
            lifetime = settings.min_request_timeout_seconds * (1 + random.random())
        bookmarks = true_param(query.get("allowWatchBookmarks"))
        return rv, initial_events, bookmarks, lifetime

    async def _watch(
        self,
        request: web.Request,
        resource: str,
        ns: str,
        matches: Callable[[Object], bool],
        settings: WatchSettings,
        faults: Faults,
    ) -> web.StreamResponse:
        """E2-E10: a chunked stream of one JSON event per line."""
        rv, initial_events, bookmarks, lifetime = self._watch_options(request.query, settings)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        apiversion, kind = KINDS[resource]
        replay_all = rv in {"", "0"} or initial_events
        since = self._store.revision if replay_all else int(rv)
        initial = [o for o in self._store.items(resource, ns or None) if matches(o)]
        try:
            watcher = self._open_watch(resource, ns, matches, None if replay_all else since, faults)
        except Expired as e:  # E5: HTTP 200, one ERROR event, then the end
            self.expired_watches += 1
            error = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
            await _send(
                response, "ERROR", {**error, "message": str(e), "reason": "Expired", "code": 410}
            )
            return response
        truncate = faults.take_truncated_watch()
        try:
            garbage = faults.take_watch_garbage()
            if garbage is not None:  # an injected line that is no valid event
                await response.write(garbage + b"\n")
            for obj in initial if replay_all else ():  # E3: synthetic ADDED for what exists
                await _send(response, "ADDED", obj)
            if initial_events and bookmarks:  # E10
                mark = _mark((apiversion, kind), since)
                mark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                await _send(response, "BOOKMARK", mark)
            dropped = await self._stream(
                response,
                watcher,
                lifetime,
                settings.bookmark_interval_seconds if bookmarks else None,
                (apiversion, kind),
                truncate=truncate,
            )
        except ConnectionError:  # the client went away; aiohttp's reset error is one too
            return response
        finally:
            self._store.unwatch(watcher)
        if dropped and request.transport is not None:
            request.transport.abort()  # a dropped connection, not a clean end
        return response

    def _open_watch(
        self,
        resource: str,
        ns: str,
        matches: Callable[[Object], bool],
        since: int | None,
        faults: Faults,
    ) -> Watcher:
        """A watcher from `since` (None: from now); Expired for a revision out of history."""
        if since is not None and faults.take_expired_watch():
            raise Expired(since, self._store.revision)
        return self._store.watch(
            resource, ns, matches, self._store.revision if since is None else since
        )

    async def _stream(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        lifetime_seconds: float,
        bookmark_every: float | None,
        kind: tuple[str, str],
        *,
        truncate: bool = False,
    ) -> bool:
        """Send events until the timeout (clean end, E8) or a drop (returns True).

        With `truncate`, the first event is sent cut in half and the stream ends there cleanly.
        """
        send = _send_truncated if truncate else _send
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + lifetime_seconds
        bookmarks = bookmark_every is not None
        every = bookmark_every or 0.0
        next_mark = loop.time() + every
        while True:
            now = loop.time()
            if now >= ends_at:
                if bookmarks:  # E7: one just before the deadline
                    await send(response, "BOOKMARK", _mark(kind, self._store.revision))
                return False
            wait = min(ends_at, next_mark if bookmarks else ends_at) - now
            try:
                change = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and loop.time() >= next_mark:
                    if await send(response, "BOOKMARK", _mark(kind, self._store.revision)):
                        return False
                    next_mark = loop.time() + every
                continue
            if change is None:
                return True
            event = watcher.event_for(change)
            if event is not None and await send(response, *event):
                return False


def _continue_from(text: str, ttl_seconds: float) -> tuple[str, int]:
    try:
        token = json.loads(base64.urlsafe_b64decode(text))
        revision, start, issued = str(token["rv"]), int(token["start"]), float(token["at"])
    except (ValueError, KeyError, TypeError):
        raise Refused(status(400, "BadRequest", "continue: invalid continue token")) from None
    if time.time() - issued > ttl_seconds:
        raise Refused(status(410, "Expired", "The provided continue parameter is too old"))
    return revision, start


def _mark(kind: tuple[str, str], revision: int) -> Object:
    return {"kind": kind[1], "apiVersion": kind[0], "metadata": {"resourceVersion": str(revision)}}


async def _send(response: web.StreamResponse, kind: str, obj: Object) -> bool:
    """Write one event on its line; False: the stream goes on."""
    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
    return False


async def _send_truncated(response: web.StreamResponse, kind: str, obj: Object) -> bool:
    """Write the first half of one event, without its newline; True: the stream ends here."""
    line = json.dumps({"type": kind, "object": obj}).encode()
    await response.write(line[: len(line) // 2])
    return True
