"""Bent DELETE reviews and bent agent answers: the deletion guard's pure parts never crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.injector import review
from sidecar.injector.guarantee import ANNOTATION, decide, verdict
from tests.injector.test_guarantee import delete_review
from tests.injector.test_webhook_fuzz import _json

_POD = {
    "metadata": {"name": "db-0", "uid": "u-1", "annotations": {ANNOTATION: "true"}},
    "status": {"phase": "Running", "podIP": "10.1.0.7"},
}
_PATHS = [
    ("request", "operation"),
    ("request", "dryRun"),
    ("request", "namespace"),
    ("request", "oldObject"),
    ("request", "oldObject", "metadata"),
    ("request", "oldObject", "metadata", "annotations"),
    ("request", "oldObject", "metadata", "uid"),
    ("request", "oldObject", "metadata", "deletionTimestamp"),
    ("request", "oldObject", "status"),
    ("request", "oldObject", "status", "podIP"),
    ("request", "resource"),
    ("request", "subResource"),
    ("request", "uid"),
]


@st.composite
def _bent(draw: st.DrawFn) -> bytes:
    document: Any = json.loads(delete_review(json.loads(json.dumps(_POD))))
    for path in draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=3)):
        node = document
        for key in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = draw(_json)
    return json.dumps(document).encode()


@given(_bent())
def test_a_bent_review_is_parsed_and_decided_without_a_crash(body: bytes) -> None:
    parsed = review.parse_delete(body)
    if isinstance(parsed, review.Answer):
        response = parsed.review["response"]
        assert response["allowed"] is True
        assert isinstance(response["uid"], str)
        return
    decided = decide(parsed, frozenset({"kube-system"}))
    assert isinstance(parsed.pod_uid, str)
    if decided is None:  # only a running, opted-in, real deletion with an IP asks the agent
        assert parsed.annotations.get(ANNOTATION) == "true"
        assert not parsed.dry_run
        assert parsed.phase == "Running"
        assert parsed.pod_ip
    else:
        assert decided.review["response"]["allowed"] is True


@given(st.integers(100, 599), _json)
def test_any_agent_answer_is_prepared_only_when_it_says_so(status: int, document: object) -> None:
    said = verdict(status, json.dumps(document).encode())
    prepared = status == 200 and isinstance(document, dict) and document.get("prepared") is True
    assert (said is None) is prepared
    assert said is None or len(said) < 400


@given(st.binary(max_size=200))
def test_any_bytes_from_an_agent_are_not_prepared(body: bytes) -> None:
    said = verdict(200, body)
    # Random bytes are never a JSON object saying prepared, so the agent is never believed.
    assert isinstance(said, str)
    assert said.startswith(("its agent's answer is not", "not done: "))
