"""List and watch over HTTP for the control-plane stand-in (reference/kubernetes.md E1-E11)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.drill.apistore import Expired, Watcher
from sidecar.drill.selectors import SelectorError, both, field_matcher, label_matcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sidecar.drill.control_plane import ControlPlane

Object = dict[str, Any]

#: resource -> (apiVersion, kind) as served.
KINDS = {
    "pods": ("v1", "Pod"),
    "services": ("v1", "Service"),
    "events": ("v1", "Event"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
}


def invalid(field_name: str, message: str) -> web.Response:
    """A 422 Invalid about one field of the request's options."""
    return status(422, "Invalid", f"{field_name}: {message}")


def status(code: int, reason: str, message: str) -> web.Response:
    """An API error as the server sends it: a Status object."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class Refused(Exception):  # noqa: N818 - the request is refused with this answer
    """Raised while checking a request: answer with `response` instead."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


class ListWatch:
    """Serves the collections of a stand-in: lists with paging, watches with their semantics."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def handler(self, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The GET handler of one collection: a list, or a watch with `watch=true`."""

        async def collection(request: web.Request) -> web.StreamResponse:
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
                    return await self._watch(request, resource, ns, matches)
                return self._list(query, resource, ns, matches)
            except Refused as refused:
                return refused.response

        return collection

    def _list(
        self, query: Any, resource: str, ns: str, matches: Callable[[Object], bool]
    ) -> web.Response:
        """E1, E4: a list with the revision to watch from; limit and continue."""
        if query.get("sendInitialEvents"):
            raise Refused(invalid("sendInitialEvents", "Forbidden: forbidden for list"))
        rv, match = query.get("resourceVersion"), query.get("resourceVersionMatch")
        if match and not rv:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs resourceVersion"))
        if match == "Exact" and rv != str(self.cp.store.revision):
            # The stand-in keeps only the newest state, so only the newest revision is exact.
            raise Refused(status(410, "Expired", f"too old resource version: {rv}"))
        items = [o for o in self.cp.store.items(resource, ns or None) if matches(o)]
        revision, start = str(self.cp.store.revision), 0
        if query.get("continue"):
            revision, start = self._continue_from(query["continue"])
        metadata: Object = {"resourceVersion": revision}
        limit = _number(query, "limit", 0)
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

    def _continue_from(self, text: str) -> tuple[str, int]:
        try:
            token = json.loads(base64.urlsafe_b64decode(text))
            revision, start, issued = str(token["rv"]), int(token["start"]), float(token["at"])
        except (ValueError, KeyError, TypeError):
            raise Refused(status(400, "BadRequest", "continue: invalid continue token")) from None
        if time.time() - issued > self.cp.continue_ttl_seconds:
            raise Refused(status(410, "Expired", "The provided continue parameter is too old"))
        return revision, start

    def _watch_options(self, query: Any) -> tuple[str, bool, bool, float]:
        """E3, E8, E10: (resourceVersion, initial events, bookmarks, lifetime), or Refused."""
        initial_events = true_param(query.get("sendInitialEvents"))
        match = query.get("resourceVersionMatch")
        if initial_events and not self.cp.watch_list:
            raise Refused(invalid("sendInitialEvents", "Forbidden: the WatchList feature is off"))
        if initial_events and match != "NotOlderThan":
            raise Refused(invalid("resourceVersionMatch", "Required value: NotOlderThan"))
        if match and not initial_events:
            raise Refused(invalid("resourceVersionMatch", "Forbidden: needs sendInitialEvents"))
        rv = query.get("resourceVersion", "")
        if rv not in {"", "0"} and not rv.isdigit():
            raise Refused(status(400, "BadRequest", f"resourceVersion: invalid value {rv!r:.30}"))
        lifetime = _number(query, "timeoutSeconds", 0)
        if lifetime <= 0:  # E8
            lifetime = self.cp.min_request_timeout_seconds * (1 + random.random())
        bookmarks = true_param(query.get("allowWatchBookmarks"))
        return rv, initial_events, bookmarks, lifetime

    async def _watch(
        self, request: web.Request, resource: str, ns: str, matches: Callable[[Object], bool]
    ) -> web.StreamResponse:
        """E2-E10: a chunked stream of one JSON event per line."""
        rv, initial_events, bookmarks, lifetime = self._watch_options(request.query)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        apiversion, kind = KINDS[resource]
        replay_all = rv in {"", "0"} or initial_events
        since = self.cp.store.revision if replay_all else int(rv)
        initial = [o for o in self.cp.store.items(resource, ns or None) if matches(o)]
        try:
            watcher = self._open_watch(resource, ns, matches, None if replay_all else since)
        except Expired as e:  # E5: HTTP 200, one ERROR event, then the end
            self.cp.expired_watches += 1
            error = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
            await _send(
                response, "ERROR", {**error, "message": str(e), "reason": "Expired", "code": 410}
            )
            return response
        try:
            for obj in initial if replay_all else ():  # E3: synthetic ADDED for what exists
                await _send(response, "ADDED", obj)
            if initial_events and bookmarks:  # E10
                mark = _mark((apiversion, kind), since)
                mark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                await _send(response, "BOOKMARK", mark)
            dropped = await self._stream(response, watcher, lifetime, bookmarks, (apiversion, kind))
        except ConnectionError:  # the client went away; aiohttp's reset error is one too
            return response
        finally:
            self.cp.store.unwatch(watcher)
        if dropped and request.transport is not None:
            request.transport.abort()  # a dropped connection, not a clean end
        return response

    def _open_watch(
        self, resource: str, ns: str, matches: Callable[[Object], bool], since: int | None
    ) -> Watcher:
        """A watcher from `since` (None: from now); Expired for a revision out of history."""
        if since is not None and self.cp.faults.expire_next_watches > 0:
            self.cp.faults.expire_next_watches -= 1
            raise Expired(since, self.cp.store.revision)
        return self.cp.store.watch(
            resource, ns, matches, self.cp.store.revision if since is None else since
        )

    async def _stream(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        lifetime_seconds: float,
        bookmarks: bool,
        kind: tuple[str, str],
    ) -> bool:
        """Send events until the timeout (clean end, E8) or a drop (returns True)."""
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + lifetime_seconds
        next_mark = loop.time() + self.cp.bookmark_interval_seconds
        while True:
            now = loop.time()
            if now >= ends_at:
                if bookmarks:  # E7: one just before the deadline
                    await _send(response, "BOOKMARK", _mark(kind, self.cp.store.revision))
                return False
            wait = min(ends_at, next_mark if bookmarks else ends_at) - now
            try:
                change = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and loop.time() >= next_mark:
                    await _send(response, "BOOKMARK", _mark(kind, self.cp.store.revision))
                    next_mark = loop.time() + self.cp.bookmark_interval_seconds
                continue
            if change is None:
                return True
            event = watcher.event_for(change)
            if event is not None:
                await _send(response, *event)


def true_param(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (clients send "True")."""
    return value in {"1", "t", "T", "true", "TRUE", "True"}


def _number(query: Any, name: str, default: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise Refused(
            status(400, "BadRequest", f"{name}: expected a number, got {text!r:.20}")
        ) from None
    return value


def _mark(kind: tuple[str, str], revision: int) -> Object:
    return {"kind": kind[1], "apiVersion": kind[0], "metadata": {"resourceVersion": str(revision)}}


async def _send(response: web.StreamResponse, kind: str, obj: Object) -> None:
    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
