"""One line of an EndpointSlice watch read as an update, or the reason it is no usable event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.errors import MalformedAnswerError, truncate
from sidecar.model.rotation import SERVICE_LABEL, Slice, parse_slice

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A line longer than this is not read (a valid slice of 1000 endpoints is far smaller).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: How much of a skipped line a reason quotes.
_QUOTED_CHARS = 80


@dataclass(frozen=True)
class Update:
    """ADDED or MODIFIED (the slice's new state) or DELETED (it is gone), E2."""

    slice: Slice
    deleted: bool
    #: The object's resourceVersion, to resume the watch from; None when it has none.
    revision: str | None


@dataclass(frozen=True)
class Bookmark:
    """BOOKMARK: only a revision to resume from (E7); None when it carries none."""

    revision: str | None


@dataclass(frozen=True)
class WatchError:
    """ERROR: the server ends the watch; code 410 means the revision expired (E5)."""

    code: int | None
    message: str


@dataclass(frozen=True)
class Skipped:
    """A line that is no usable event; an update it may have carried is lost."""

    reason: str


WatchEvent = Update | Bookmark | WatchError | Skipped


def read_line(line: bytes) -> WatchEvent:
    """One line of the stream, as sent (E2: one JSON document per line). Never raises."""
    if len(line) > MAX_LINE_BYTES:
        return Skipped(f"a line of {len(line)} bytes, over the {MAX_LINE_BYTES} bytes read")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = line.decode("utf-8", errors="backslashreplace")
        return Skipped(f"not UTF-8 (at byte {e.start}): {_quote(shown)}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Skipped(f"not JSON: {_quote(text)}")
    return read_event(value)


def read_event(value: object) -> WatchEvent:
    """A decoded watch document as an event. Never raises: what is not one is Skipped."""
    if not isinstance(value, dict):
        return Skipped(f"not a JSON object: {type(value).__name__}")
    kind, obj = value.get("type"), value.get("object")
    if not isinstance(kind, str):
        return Skipped(f"no event type: type is {_quote(kind)}")
    if not isinstance(obj, dict):
        return Skipped(f"{_quote(kind)} event without an object: object is {_quote(obj)}")
    revision = _revision(obj.get("metadata"))
    if kind == "BOOKMARK":
        return Bookmark(revision)
    if kind == "ERROR":
        code = obj.get("code")
        return WatchError(
            code if isinstance(code, int) and not isinstance(code, bool) else None,
            f"ERROR event: {_quote(obj.get('reason'))}: {_quote(obj.get('message'))}",
        )
    return _update(kind, obj, revision)


def _update(kind: str, obj: Mapping[str, Any], revision: str | None) -> Update | Skipped:
    """An ADDED, MODIFIED or DELETED event; any other type is Skipped."""
    if kind not in {"ADDED", "MODIFIED", "DELETED"}:
        return Skipped(f"unknown event type {_quote(kind)}")
    try:
        parsed = _slice(obj, deleted=kind == "DELETED")
    except (MalformedAnswerError, RecursionError) as e:  # RecursionError: absurdly deep junk
        return Skipped(f"{kind} event with an invalid EndpointSlice: {e}")
    return Update(parsed, kind == "DELETED", revision)


class Lines:
    """Splits a watch stream into its lines as its bytes arrive; blank lines carry nothing."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data`; a line growing past the bound is handed on as it is."""
        *complete, tail = data.split(b"\n")
        lines: list[bytes] = []
        if complete:
            lines = [b"".join([*self._parts, complete[0]]), *complete[1:]]
            self._parts, self._size = [], 0
        self._parts.append(tail)
        self._size += len(tail)
        if self._size > self._max:
            lines.append(self.end() or b"")
        return [line for line in lines if line.strip()]

    def end(self) -> bytes | None:
        """What the stream left without its newline (a truncated last line), if anything."""
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return rest if rest.strip() else None


def _slice(obj: Mapping[str, Any], *, deleted: bool) -> Slice:
    """The slice an event carries; a DELETED one needs only its name (its state is over)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise MalformedAnswerError(f"metadata: expected an object, got {_quote(metadata)}")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedAnswerError(f"metadata.name: expected a name, got {_quote(name)}")
    labels = metadata.get("labels")
    service = labels.get(SERVICE_LABEL) if isinstance(labels, dict) else None
    if service is not None and not isinstance(service, str):
        raise MalformedAnswerError(f"{name}: label {SERVICE_LABEL}: got {_quote(service)}")
    family = obj.get("addressType")
    if family is not None and not isinstance(family, str):
        raise MalformedAnswerError(f"{name}: addressType: got {_quote(family)}")
    if deleted:
        return Slice(name, service or None, family or "", ())
    return parse_slice(obj)


def _revision(metadata: object) -> str | None:
    if not isinstance(metadata, dict):
        return None
    revision = metadata.get("resourceVersion")
    return revision if isinstance(revision, str) and revision else None


def _quote(value: object) -> str:
    """A short, safe rendering of a remote value for a reason."""
    if isinstance(value, str):
        return repr(truncate(value, _QUOTED_CHARS))
    return "nothing" if value is None else f"a {type(value).__name__}"
