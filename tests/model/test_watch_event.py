"""Watch lines as slice updates: every value ends as an update, a bookmark, an error or Skipped."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model.rotation import SERVICE_LABEL, parse_slice
from sidecar.model.watch_event import (
    Bookmark,
    Lines,
    Skipped,
    Update,
    WatchError,
    read_event,
    read_line,
)

_EVENTS = (Update, Bookmark, WatchError, Skipped)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


def _slice(name: str = "web-abc", *, ready: Any = True, uid: Any = "u-1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {SERVICE_LABEL: "web"}, "resourceVersion": "7"},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.1.0.7"],
                "conditions": {"ready": ready},
                "targetRef": {"uid": uid},
            }
        ],
    }


valid_events = st.builds(
    lambda kind, name, ready: {"type": kind, "object": _slice(name, ready=ready)},
    st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
    st.text(min_size=1, max_size=10),
    st.booleans() | st.none(),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document where a value sits."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _replaced(doc: Any, path: tuple[Any, ...], junk: Any) -> Any:
    if not path:
        return junk
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replaced(doc[path[0]], path[1:], junk)
    return copy


def _assert_correct(event: Any, doc: Any) -> None:
    """An update is exactly what the document says; anything else is one of the known kinds."""
    assert isinstance(event, _EVENTS)
    if isinstance(event, Update):
        assert event.deleted == (doc["type"] == "DELETED")
        assert event.slice.name == doc["object"]["metadata"]["name"]
        if not event.deleted:
            assert event.slice == parse_slice(doc["object"])
    if isinstance(event, Skipped):
        assert event.reason
        assert len(event.reason) < 400


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_an_event_or_skipped_never_an_exception(value: Any) -> None:
    event = read_event(value)
    assert isinstance(event, _EVENTS)
    if not isinstance(value, dict):
        assert isinstance(event, Skipped)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_line_is_an_event_or_skipped_never_an_exception(line: bytes) -> None:
    assert isinstance(read_line(line), _EVENTS)


@settings(max_examples=200, deadline=None)
@given(valid_events, st.data(), json_values)
def test_a_valid_event_with_junk_anywhere_is_a_correct_update_or_skipped(
    doc: dict[str, Any], data: st.DataObject, junk: Any
) -> None:
    path = data.draw(st.sampled_from(_paths(doc)))
    broken = _replaced(doc, path, junk)
    event = read_line(json.dumps(broken).encode())
    if isinstance(broken, dict) and broken.get("type") in ["ADDED", "MODIFIED", "DELETED"]:
        assert not isinstance(event, (Bookmark, WatchError))
    _assert_correct(event, broken)


@settings(max_examples=200, deadline=None)
@given(valid_events)
def test_a_valid_event_is_its_update_with_its_revision(doc: dict[str, Any]) -> None:
    event = read_line(json.dumps(doc).encode() + b"\n")
    assert isinstance(event, Update)
    assert event.revision == "7"
    _assert_correct(event, doc)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=8), st.lists(st.integers(1, 40), min_size=1))
def test_lines_are_the_same_however_the_stream_is_cut(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"\n".join(lines)
    splitter, at = Lines(), 0
    got: list[bytes] = []
    while at < len(stream):
        size = cuts[len(got) % len(cuts)]
        got += splitter.feed(stream[at : at + size])
        at += size
    rest = splitter.end()
    expected = [line for line in stream.split(b"\n") if line.strip()]
    assert got + ([rest] if rest is not None else []) == expected


def test_a_line_past_the_bound_is_handed_on_and_then_skipped() -> None:
    splitter = Lines(max_line_bytes=10)
    assert splitter.feed(b"0123456") == []
    (long,) = splitter.feed(b"789abc")
    assert long == b"0123456789abc"
    assert splitter.end() is None
    event = read_line(b"x" * (8 * 1024 * 1024 + 1))
    assert isinstance(event, Skipped)
    assert event.reason.startswith("a line of 8388609 bytes")


def test_each_kind_of_bad_line_says_what_was_wrong() -> None:
    cases = {
        b"\xff\xfe": "not UTF-8 (at byte 0): '\\\\xff\\\\xfe'",
        b'{"type": "ADDED", "obj': "not JSON: ",
        b"[1]": "not a JSON object: list",
        b'{"object": {}}': "no event type: type is nothing",
        b'{"type": "ADDED"}': "'ADDED' event without an object: object is nothing",
        b'{"type": "NEW", "object": {}}': "unknown event type 'NEW'",
        b'{"type": "ADDED", "object": {"metadata": {"name": 5}}}': (
            "ADDED event with an invalid EndpointSlice: metadata.name: expected a name, got a int"
        ),
    }
    for line, reason in cases.items():
        event = read_line(line)
        assert isinstance(event, Skipped), line
        assert event.reason.startswith(reason), (line, event.reason)


def test_error_bookmark_and_deleted_events() -> None:
    error = read_line(
        b'{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}'
    )
    assert error == WatchError(410, "ERROR event: 'Expired': 'too old'")
    assert read_line(b'{"type": "ERROR", "object": {"code": true}}') == WatchError(
        None, "ERROR event: nothing: nothing"
    )
    mark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}
    assert read_event(mark) == Bookmark("12")
    assert read_event({"type": "BOOKMARK", "object": {}}) == Bookmark(None)
    # A DELETED slice needs only its name: its endpoints no longer matter.
    gone = read_event({"type": "DELETED", "object": _slice(ready="junk")})
    assert isinstance(gone, Update)
    assert gone.deleted
    assert gone.slice.name == "web-abc"
    assert gone.slice.endpoints == ()
    broken = read_event({"type": "MODIFIED", "object": _slice(ready="junk")})
    assert isinstance(broken, Skipped)
    assert "conditions.ready: expected true or false, got 'junk'" in broken.reason
