"""Malformed reviews thrown at the webhook over TLS: every answer well formed, no crash."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.injector.conftest import PLAIN_POD, Served, review

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_paths = st.sampled_from(
    [
        ("apiVersion",),
        ("kind",),
        ("request",),
        ("request", "uid"),
        ("request", "operation"),
        ("request", "resource"),
        ("request", "resource", "resource"),
        ("request", "namespace"),
        ("request", "object"),
        ("request", "object", "metadata"),
        ("request", "object", "metadata", "annotations"),
        ("request", "object", "metadata", "name"),
        ("request", "object", "spec"),
        ("request", "object", "spec", "containers"),
        ("request", "subResource"),
    ]
)


@st.composite
def _bent_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """A real pod review with a few of its fields replaced by any JSON value."""
    document = review(PLAIN_POD)
    for path in draw(st.lists(_paths, min_size=1, max_size=3)):
        node: Any = document
        for key in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = draw(_json)
    return document


def _check(status: int, body: Any, sent_uid: object) -> None:
    assert status in (200, 400), (status, body)
    assert isinstance(body, dict), body
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = body["response"]
    assert response["allowed"] is True
    assert isinstance(response["uid"], str)
    if status == 200:
        assert response["uid"] == sent_uid
    else:
        assert response["status"]["code"] == 400
    assert all(isinstance(w, str) and len(w) <= 120 for w in response.get("warnings", []))
    assert len(response.get("warnings", [])) <= 10


_bounded = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_bounded
@given(document=_bent_reviews())
async def test_a_bent_review_gets_a_well_formed_answer(
    served: Served, document: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    status, body = await served.post(json.dumps(document).encode())
    request = document.get("request")
    _check(status, body, request.get("uid") if isinstance(request, dict) else None)
    # The server itself logged no error (a planner failure is the stand-in's, and answered).
    assert not [
        r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.ERROR
    ]


@_bounded
@given(value=_json)
async def test_any_json_value_gets_a_well_formed_answer(served: Served, value: object) -> None:
    status, body = await served.post(json.dumps(value).encode())
    _check(status, body, None)
    assert status == 400


@_bounded
@given(data=st.binary(max_size=300))
async def test_any_bytes_get_a_well_formed_answer(served: Served, data: bytes) -> None:
    status, body = await served.post(data)
    _check(status, body, None)
    try:
        json.loads(data)
    except ValueError:
        assert body["response"]["status"]["message"] == "the body is not JSON"
