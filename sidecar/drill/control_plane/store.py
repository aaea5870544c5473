"""The API stand-in's storage: objects, one revision counter, change history, watchers.

Follows kubernetes-behaviour E1-E9: a list carries the revision to watch from; a watch from
a revision replays the changes after it, or ends with an ERROR 410 once that revision left the
history window; each watcher sees ADDED / MODIFIED / DELETED as its own selector decides.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: An API object as JSON decodes it; the one definition the stand-in uses.
Object = dict[str, Any]
Key = tuple[str, str, str]  # resource, namespace, name


def now_rfc3339(offset_seconds: float = 0.0) -> str:
    """An API timestamp: RFC 3339, UTC, second precision (A3)."""
    moment = datetime.now(UTC).timestamp() + offset_seconds
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an API timestamp."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Change:
    """One write: `old` is None for a create, `new` is None for a removal."""

    revision: int
    resource: str
    namespace: str
    old: Object | None
    new: Object | None


class Expired(Exception):  # noqa: N818 - named after the API's reason, as clients see it
    """The asked revision is older than the history window (E5, E6)."""

    def __init__(self, asked: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {asked} ({oldest})")


@dataclass(eq=False)
class Watcher:
    """One open watch: changes of one resource in one namespace, filtered by its predicate."""

    resource: str
    namespace: str
    matches: Callable[[Object], bool]
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def event_for(self, change: Change) -> tuple[str, Object] | None:
        """The event this watcher sees for a change, if any (E9, A12)."""
        was = change.old is not None and self.matches(change.old)
        now = change.new is not None and self.matches(change.new)
        if now and not was:
            assert change.new is not None  # noqa: S101 - implied by `now`
            return "ADDED", change.new
        if now:
            assert change.new is not None  # noqa: S101 - implied by `now`
            return "MODIFIED", change.new
        if was:
            assert change.old is not None  # noqa: S101 - implied by `was`
            # The last stored state, stamped with the revision of the change that ended it.
            last = copy.deepcopy(change.old)
            last["metadata"]["resourceVersion"] = str(change.revision)
            return "DELETED", last
        return None


class Store:
    """All objects of the stand-in, and who watches them."""

    def __init__(self, *, history_limit: int = 1000) -> None:
        self.revision = 1
        self._objects: dict[Key, Object] = {}
        self._history: deque[Change] = deque(maxlen=history_limit)
        #: Changes at or before this revision cannot be replayed any more.
        self._compacted = 1
        self._watchers: set[Watcher] = set()
        #: Set each time a watch opens; tests and the drill wait on it instead of polling.
        self.watch_opened = asyncio.Event()

    # -- reads ----------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Object | None:
        """A copy of the object, if it exists."""
        found = self._objects.get((resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def items(self, resource: str, namespace: str | None = None) -> list[Object]:
        """Copies of every object of a resource (in one namespace, or all), by name."""
        return [
            copy.deepcopy(obj)
            for (res, ns, _), obj in sorted(self._objects.items())
            if res == resource and (namespace is None or ns == namespace)
        ]

    # -- writes ---------------------------------------------------------------------------

    def create(self, resource: str, obj: Object) -> Object:
        """Store a new object: uid, creationTimestamp and a revision are set here."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        return self._write(resource, None, obj)

    def update(self, resource: str, obj: Object) -> Object:
        """Replace an existing object; the caller checked that it exists."""
        meta = obj["metadata"]
        old = self._objects[(resource, meta.get("namespace", ""), meta["name"])]
        return self._write(resource, old, obj)

    def remove(self, resource: str, namespace: str, name: str) -> Object:
        """Delete an object; returns its last state with the revision of the delete (A12)."""
        old = self._objects.pop((resource, namespace, name))
        self.revision += 1
        self._publish(Change(self.revision, resource, namespace, old, None))
        last = copy.deepcopy(old)
        last["metadata"]["resourceVersion"] = str(self.revision)
        return last

    def _write(self, resource: str, old: Object | None, obj: Object) -> Object:
        self.revision += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.revision)
        namespace = meta.get("namespace", "")
        stored = copy.deepcopy(obj)
        self._objects[(resource, namespace, meta["name"])] = stored
        self._publish(Change(self.revision, resource, namespace, old, stored))
        return copy.deepcopy(stored)

    def _publish(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].revision
        self._history.append(change)
        for watcher in self._watchers:
            if watcher.resource == change.resource and watcher.namespace in (
                "",
                change.namespace,
            ):
                watcher.queue.put_nowait(change)

    # -- watches --------------------------------------------------------------------------

    def watch(
        self, resource: str, namespace: str, matches: Callable[[Object], bool], since: int | None
    ) -> Watcher:
        """Open a watch; changes after `since` are queued first (E3), or Expired (E5)."""
        if since is not None and since < self._compacted:
            raise Expired(since, self._compacted)
        watcher = Watcher(resource, namespace, matches)
        if since is not None:
            for change in self._replay(since):
                if change.resource == resource and namespace in ("", change.namespace):
                    watcher.queue.put_nowait(change)
        self._watchers.add(watcher)
        self.watch_opened.set()
        return watcher

    def _replay(self, since: int) -> Iterator[Change]:
        return (c for c in self._history if c.revision > since)

    def unwatch(self, watcher: Watcher) -> None:
        """Close a watch."""
        self._watchers.discard(watcher)

    def drop_watches(self) -> int:
        """End every open watch at once (a dropped connection); returns how many."""
        count = len(self._watchers)
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)
        self._watchers.clear()
        return count

    def compact(self) -> None:
        """Forget all history: every revision before now is expired (E6)."""
        self._history.clear()
        self._compacted = self.revision

    async def wait_for_watchers(self, count: int, seconds: float) -> None:
        """Return once `count` watches are open; TimeoutError after `seconds`."""
        async with asyncio.timeout(seconds):
            while len(self._watchers) < count:
                self.watch_opened.clear()
                await self.watch_opened.wait()
