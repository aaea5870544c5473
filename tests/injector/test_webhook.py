"""The webhook over real TLS with real AdmissionReview bodies: patches, uids, warnings, refusals."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
import pytest
from structlog.testing import capture_logs

from sidecar.injector import review as reviews
from sidecar.injector import server
from sidecar.injector.server import BODY_MAX_BYTES
from tests.injector.conftest import PLAIN_POD, Served, review

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def _post_json(document: object) -> bytes:
    return json.dumps(document).encode()


def _well_formed(body: Any, status: int) -> dict[str, Any]:
    """The answer is an AdmissionReview v1 allowing the request; its response is returned."""
    assert isinstance(body, dict), body
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert isinstance(response["uid"], str)
    assert response["allowed"] is True
    for warning in response.get("warnings", []):
        assert isinstance(warning, str)
        assert len(warning) <= 120, warning
    if status == 400:
        assert response["status"]["code"] == 400
        assert response["status"]["message"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        assert isinstance(json.loads(base64.b64decode(response["patch"])), list)
    return dict(response)


def _applied(pod: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(pod)), patch)
    return result


async def test_a_plain_pod_gets_a_patch_that_injects_when_applied(served: Served) -> None:
    status, body = await served.post(_post_json(review(PLAIN_POD, uid=UID)))
    assert status == 200
    response = _well_formed(body, status)
    assert response["uid"] == UID
    injected = _applied(PLAIN_POD, response)
    assert [c["name"] for c in injected["spec"]["containers"]] == ["app", "agent"]
    # The review's namespace reaches the planner (a Deployment's pod has none of its own).
    assert injected["metadata"]["annotations"]["test/injected"] == "shop"
    # The stand-in's warning is 228 characters: it comes back cut to 120, prefixed.
    (warning,) = response["warnings"]
    assert len(warning) == 120
    assert warning.startswith("shutdown-coordinator: no Service selects this pod")
    assert warning.endswith("...")


@pytest.mark.parametrize("uid", ["a", "0" * 36, "ünïcødé-uid", "x" * 300])
async def test_the_uid_is_echoed_exactly(served: Served, uid: str) -> None:
    status, body = await served.post(_post_json(review(PLAIN_POD, uid=uid)))
    assert status == 200
    assert _well_formed(body, status)["uid"] == uid


async def test_an_injected_pod_gets_no_patch(served: Served) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["metadata"]["annotations"] = {"test/injected": "shop"}
    status, body = await served.post(_post_json(review(pod)))
    response = _well_formed(body, status)
    assert status == 200
    assert "patch" not in response
    assert "patchType" not in response


async def test_a_refused_pod_is_allowed_unchanged_with_the_reason(served: Served) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["spec"]["hostNetwork"] = True
    status, body = await served.post(_post_json(review(pod)))
    response = _well_formed(body, status)
    assert "patch" not in response
    assert response["warnings"] == [
        "shutdown-coordinator: not injected: hostNetwork pods share the node's ports"
    ]


@pytest.mark.parametrize(
    ("operation", "resource"),
    [("UPDATE", "pods"), ("DELETE", "pods"), ("CONNECT", "pods"), ("CREATE", "deployments")],
)
async def test_other_operations_and_resources_are_allowed_without_a_patch(
    served: Served, operation: str, resource: str
) -> None:
    status, body = await served.post(
        _post_json(review(PLAIN_POD, operation=operation, resource=resource))
    )
    assert status == 200
    response = _well_formed(body, status)
    assert response["uid"] == UID
    assert "patch" not in response
    assert "warnings" not in response


async def test_a_subresource_create_is_not_injected(served: Served) -> None:
    document = review(PLAIN_POD)
    document["request"]["subResource"] = "binding"
    status, body = await served.post(_post_json(document))
    assert status == 200
    assert "patch" not in _well_formed(body, status)


async def test_a_create_without_a_pod_object_is_allowed_with_a_warning(served: Served) -> None:
    status, body = await served.post(_post_json(review(None)))
    assert status == 200
    response = _well_formed(body, status)
    assert "patch" not in response
    assert response["warnings"] == [
        "shutdown-coordinator: not injected: the review carries no pod object"
    ]


async def _broken_plan(pod: Mapping[str, Any], namespace: str, *, dry_run: bool = True) -> Any:
    raise KeyError("containers")


async def _stuck_plan(pod: Mapping[str, Any], namespace: str, *, dry_run: bool = True) -> Any:
    await asyncio.Event().wait()


@pytest.mark.parametrize("plan", [_broken_plan])
async def test_a_planner_failure_creates_the_pod_unchanged_and_is_logged(served: Served) -> None:
    with capture_logs() as logs:
        status, body = await served.post(_post_json(review(PLAIN_POD)))
    assert status == 200
    response = _well_formed(body, status)
    assert "patch" not in response
    assert response["warnings"] == [
        "shutdown-coordinator: not injected: internal error (KeyError); the injector's log has more"
    ]
    assert [e["uid"] for e in logs if e["event"] == "review_plan_failed"] == [UID]
    answered = [e for e in logs if e["event"] == "review_answered"]
    assert [(e["outcome"], e["namespace"], e["pod"]) for e in answered] == [
        ("failed", "shop", "web-7d9f8b-")
    ]


@pytest.mark.parametrize("plan", [_stuck_plan])
async def test_a_planner_that_does_not_answer_in_time_creates_the_pod_unchanged(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "PLAN_TIMEOUT_SECONDS", 0.1)
    status, body = await served.post(_post_json(review(PLAIN_POD)))
    assert status == 200
    response = _well_formed(body, status)
    assert "patch" not in response
    assert response["warnings"] == [
        "shutdown-coordinator: not injected: no plan within 0.1 s; the injector's log has more"
    ]


def _without(key: str) -> dict[str, Any]:
    document = review(PLAIN_POD)
    del document["request"][key]
    return document


@pytest.mark.parametrize(
    ("body", "uid", "message"),
    [
        (b"", "", "the body is not JSON"),
        (b"{not json", "", "the body is not JSON"),
        (b"\xff\xfe\x00", "", "the body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "", "the body is not JSON"),
        (b"[]", "", "expected a JSON object, got list"),
        (b"null", "", "expected a JSON object, got NoneType"),
        (
            _post_json({**review(PLAIN_POD), "apiVersion": "admission.k8s.io/v1beta1"}),
            UID,
            (
                "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got "
                '"admission.k8s.io/v1beta1" "AdmissionReview"'
            ),
        ),
        (
            _post_json({**review(PLAIN_POD), "kind": "Pod"}),
            UID,
            (
                "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got "
                '"admission.k8s.io/v1" "Pod"'
            ),
        ),
        (
            _post_json({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            "",
            "the review has no `request` object",
        ),
        (_post_json(_without("uid")), "", "the review's request has no uid"),
        (
            _post_json(
                {**review(PLAIN_POD), "request": {**review(PLAIN_POD)["request"], "uid": 7}}
            ),
            "",
            "the review's request has no uid",
        ),
    ],
    ids=[
        "empty",
        "not-json",
        "not-utf8",
        "too-deep",
        "array",
        "null",
        "v1beta1",
        "wrong-kind",
        "no-request",
        "no-uid",
        "uid-not-a-string",
    ],
)
async def test_a_malformed_review_gets_400_with_a_review_saying_why(
    served: Served, body: bytes, uid: str, message: str
) -> None:
    status, answer = await served.post(body)
    assert status == 400
    response = _well_formed(answer, status)
    assert response["uid"] == uid
    assert response["status"]["message"] == message


async def test_a_body_over_the_limit_is_refused_unread(served: Served) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["metadata"]["annotations"] = {"big": "x" * BODY_MAX_BYTES}
    status, _ = await served.post(_post_json(review(pod)))
    assert status == 413


async def test_a_body_just_under_the_limit_is_answered(served: Served) -> None:
    pod = copy.deepcopy(PLAIN_POD)
    pod["metadata"]["annotations"] = {"big": ""}
    size = len(_post_json(review(pod)))
    pod["metadata"]["annotations"]["big"] = "x" * (BODY_MAX_BYTES - size - 1)
    body = _post_json(review(pod))
    assert len(body) == BODY_MAX_BYTES - 1
    status, answer = await served.post(body)
    assert status == 200
    assert "patch" in _well_formed(answer, status)


async def test_probes_and_readiness_falling_at_shutdown(served: Served) -> None:
    assert await served.get("/healthz") == (200, "ok\n")
    assert await served.get("/readyz") == (200, "ready\n")
    served.webhook.unready()
    assert await served.get("/readyz") == (503, "shutting down\n")
    assert await served.get("/healthz") == (200, "ok\n")
    # Unready is not closed: the API server may still call until the endpoints change.
    status, body = await served.post(_post_json(review(PLAIN_POD)))
    assert status == 200
    assert "patch" in _well_formed(body, status)


async def test_only_post_on_mutate(served: Served) -> None:
    assert (await served.get("/mutate"))[0] == 405
    assert (await served.post(b"{}", path="/validate"))[0] == 404


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "shutdown-coordinator: short"),
        ("two\nlines\tand\x00nul", "shutdown-coordinator: two lines and nul"),
        ("x" * 500, "shutdown-coordinator: " + "x" * 95 + "..."),
    ],
)
def test_warning_lines_are_printable_single_lines_of_at_most_120(text: str, expected: str) -> None:
    line = reviews.warning_line(text)
    assert line == expected
    assert len(line) <= 120


def test_at_most_ten_warnings() -> None:
    answer = reviews.allow("u", "x", [f"w{i}" for i in range(30)])
    assert len(answer.review["response"]["warnings"]) == 10
