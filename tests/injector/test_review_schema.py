"""Every AdmissionReview the webhook answers validates against the Kubernetes schema.

kubernetes-validate ships no `admission.k8s.io/v1` schema: AdmissionReview is no REST resource,
so it is not in the API server's OpenAPI document, where the package's schemas come from
(`kubernetes_validate.validate` raises SchemaNotFoundError for it; a test below holds that).
So the review is checked against a schema written from the Go type (k8s.io/api/admission/v1
`AdmissionReview` and `AdmissionResponse`, strict: no other field), whose `status` is the
package's own strict `meta/v1 Status`; and every patched pod against the package's Pod schema.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jsonpatch
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from referencing import Registry, Resource

from sidecar.model.injection import Injection, plan_patch
from sidecar.settings.injection import InjectionTemplate
from tests.injector.conftest import PLAIN_POD, Planner, Served, review

KUBERNETES = "1.30"
TOKEN = "0123456789abcdef0123456789abcdef"
_STATUS = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.Status"

#: k8s.io/api/admission/v1 types.go, as JSON: AdmissionReview with a response.
ADMISSION_REVIEW_RESPONSE: dict[str, Any] = {
    "$id": "https://kubernetes.io/api/admissionreview/admission/v1",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "response"],
    "properties": {
        "apiVersion": {"const": "admission.k8s.io/v1"},
        "kind": {"const": "AdmissionReview"},
        "response": {
            "type": "object",
            "additionalProperties": False,
            "required": ["uid", "allowed"],
            # The API server refuses a patch without its type.
            "dependentRequired": {"patch": ["patchType"]},
            "properties": {
                "uid": {"type": "string"},
                "allowed": {"type": "boolean"},
                "status": {"$ref": _STATUS},
                "patch": {"type": "string", "contentEncoding": "base64"},
                "patchType": {"enum": ["JSONPatch"]},
                "auditAnnotations": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}


def _definitions() -> Resource[Any]:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    text = (folder / f"v{KUBERNETES}.0-local-strict" / "_definitions.json").read_text()
    return Resource.from_contents(json.loads(text))


VALIDATOR = jsonschema.Draft202012Validator(
    ADMISSION_REVIEW_RESPONSE, registry=_definitions() @ Registry()
)


def validate_review(answer: Any) -> dict[str, Any]:
    """The answer against the schema, plus what a schema cannot say; its response returned."""
    VALIDATOR.validate(answer)
    response: dict[str, Any] = answer["response"]
    if "patch" in response:
        patch = json.loads(base64.b64decode(response["patch"], validate=True))
        assert isinstance(patch, list)
        assert patch
    return response


def test_the_package_has_no_admission_review_schema() -> None:
    """Why the review's schema is written here: the package would refuse to check it."""
    document = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_schema_refuses_what_the_api_server_would() -> None:
    """The schema can fail: a field Kubernetes does not know, a patch without its type."""
    good: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True, "status": {"code": 400, "message": "m"}},
    }
    validate_review(good)
    bad = [
        {**good, "response": {**good["response"], "warning": "a typo"}},
        {**good, "response": {**good["response"], "patch": "W10="}},
        {**good, "response": {**good["response"], "status": {"code": "400"}}},
        {**good, "response": {"allowed": True}},
        {**good, "apiVersion": "admission.k8s.io/v1beta1"},
    ]
    for answer in bad:
        with pytest.raises(jsonschema.ValidationError):
            validate_review(answer)


async def _real_plan(pod: Mapping[str, Any], namespace: str, *, dry_run: bool = True) -> Injection:
    """The injector's planner: plan_patch with the default template and a token."""
    return plan_patch(pod, InjectionTemplate(), namespace=namespace, token=TOKEN)


@pytest.fixture
def plan() -> Planner:
    return _real_plan


def _pod(**changes: Any) -> dict[str, Any]:
    pod = copy.deepcopy(PLAIN_POD)
    for key, value in changes.items():
        pod["spec"][key] = value
    return pod


ISTIO_POD = _pod(
    containers=[
        {"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]},
        {
            "name": "istio-proxy",
            "image": "proxyv2:1.22",
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        },
    ]
)
SLEEPING_POD = _pod(
    containers=[
        {
            "name": "app",
            "image": "web:1",
            "ports": [{"containerPort": 8080}],
            "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
        }
    ],
    terminationGracePeriodSeconds=5,
)


@pytest.mark.parametrize(
    ("pod", "outcome"),
    [
        (PLAIN_POD, "patch"),
        (ISTIO_POD, "patch and warnings"),
        (SLEEPING_POD, "patch and warnings"),
        (_pod(hostNetwork=True), "warnings"),
    ],
    ids=["plain", "istio", "existing-sleep-short-grace", "refused-host-network"],
)
async def test_every_pod_create_answer_validates_and_its_patched_pod_too(
    served: Served, pod: dict[str, Any], outcome: str
) -> None:
    status, answer = await served.post(json.dumps(review(pod)).encode())
    assert status == 200
    response = validate_review(answer)
    assert ("patch" in response) == ("patch" in outcome)
    assert ("warnings" in response) == ("warnings" in outcome)
    if "patch" in response:
        patch = json.loads(base64.b64decode(response["patch"]))
        injected = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
        kubernetes_validate.validate(injected, KUBERNETES, strict=True)
        # Injected again: nothing to add, and that answer validates too.
        status, again = await served.post(json.dumps(review(injected)).encode())
        assert status == 200
        assert "patch" not in validate_review(again)


@pytest.mark.parametrize(
    "document",
    [
        review(PLAIN_POD, operation="UPDATE"),
        review(PLAIN_POD, resource="services"),
        review(None),
    ],
    ids=["update", "other-resource", "no-object"],
)
async def test_reviews_not_planned_get_answers_that_validate(
    served: Served, document: dict[str, Any]
) -> None:
    status, answer = await served.post(json.dumps(document).encode())
    assert status == 200
    assert "patch" not in validate_review(answer)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({**review(PLAIN_POD), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        json.dumps({**review(PLAIN_POD), "request": {"uid": 7}}).encode(),
    ],
    ids=["empty", "not-json", "not-utf8", "array", "v1beta1", "no-request", "uid-not-a-string"],
)
async def test_malformed_reviews_get_400_answers_that_validate(served: Served, body: bytes) -> None:
    status, answer = await served.post(body)
    assert status == 400
    response = validate_review(answer)
    assert response["status"]["code"] == 400
