"""AdmissionReview v1 in and out: which requests are pods to inject or guard, every answer's shape.

Pure: bytes in, a status and a JSON document out; no I/O. What each kind of review gets
(docs/webhook.md has the same table):

| review | HTTP | response |
| --- | --- | --- |
| a pod CREATE | 200 | allowed, with the JSON Patch if there is anything to add |
| a pod CREATE the planner refuses (hostNetwork) or fails on | 200 | allowed, no patch, a warning |
| any other operation (UPDATE, DELETE, CONNECT), subresource or resource | 200 | allowed, no patch |
| a v1 review with a uid but no usable `request.object` | 200 | allowed, no patch, a warning |
| not JSON, not a v1 AdmissionReview, no `request` or no uid | 400 | allowed, `status` says why |

Allowing is always the answer: the webhook adds a sidecar, it never guards anything, and a pod
that cannot be injected must still be created (the same as `failurePolicy: Ignore`). The 400
answers are for callers that are not the API server (it only sends what the first rows cover);
their body is still an AdmissionReview, with the uid when one was found.

The deletion webhook (/validate-delete, sidecar/injector/guarantee.py) reads its pod DELETE
with `parse_delete` and answers with `allow` or `refuse`; docs/guarantee.md has its table.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
#: Kubernetes asks admission warnings to stay within 120 characters.
WARNING_MAX_CHARS = 120
#: The API server truncates long warning lists; the first ones are what a user reads.
WARNINGS_MAX = 10
#: How much of a bad value an error message quotes.
QUOTE_MAX_CHARS = 60
_WARNING_PREFIX = "shutdown-coordinator: "


class Planned(Protocol):
    """What the planner (sidecar.model.injection.plan_patch) decided for one pod."""

    @property
    def patch(self) -> list[dict[str, Any]]:
        """RFC 6902 operations on the Pod; empty when there is nothing to add."""

    @property
    def warnings(self) -> list[str]:
        """What the user should know."""

    @property
    def refused(self) -> str | None:
        """Why the pod is left alone, if it is."""


@dataclass(frozen=True)
class PodReview:
    """A pod CREATE to plan: the uid to echo, the namespace and the pod object."""

    uid: str
    namespace: str
    pod: Mapping[str, Any]
    #: A dry run must cause no side effect (no token Secret is created for it).
    dry_run: bool = False

    @property
    def pod_name(self) -> str:
        """The pod's name, or its generateName with a dash (Deployments' pods have no name yet)."""
        metadata = self.pod.get("metadata")
        if not isinstance(metadata, dict):
            return ""
        name = metadata.get("name") or metadata.get("generateName") or ""
        return _quote(name) if not isinstance(name, str) else name[:253]


@dataclass(frozen=True)
class Answer:
    """An HTTP status and the AdmissionReview to send, with one word for the log."""

    status: int
    review: dict[str, Any]
    outcome: str

    def body(self) -> bytes:
        """The review as compact JSON."""
        return json.dumps(self.review, separators=(",", ":")).encode()


def parse(body: bytes) -> PodReview | Answer:
    """The pod CREATE this body asks about, or the answer to give without planning."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _bad("", "the body is not JSON")
    if not isinstance(document, dict):
        return _bad("", f"expected a JSON object, got {type(document).__name__}")
    request = _request(document)
    if isinstance(request, Answer):
        return request
    uid = request["uid"]
    if not _is_pod_create(request):
        return allow(uid, "skipped")
    pod = request.get("object")
    if not isinstance(pod, dict):
        return allow(uid, "no_object", ["not injected: the review carries no pod object"])
    namespace = request.get("namespace")
    namespace_text = namespace if isinstance(namespace, str) else ""
    return PodReview(uid, namespace_text, pod, request.get("dryRun") is True)


@dataclass(frozen=True)
class DeleteReview:
    """A pod DELETE to guard: the review's uid, the pod as it is (oldObject), dry run or not."""

    uid: str
    namespace: str
    name: str
    pod: Mapping[str, Any]
    dry_run: bool

    @property
    def pod_uid(self) -> str:
        """The pod's own uid (each incarnation of a name has its own), or "" without one."""
        uid = _metadata(self.pod).get("uid")
        return uid[:128] if isinstance(uid, str) else ""

    @property
    def annotations(self) -> Mapping[str, Any]:
        """The pod's annotations ({} when absent or not an object)."""
        annotations = _metadata(self.pod).get("annotations")
        return annotations if isinstance(annotations, dict) else {}

    @property
    def terminating(self) -> bool:
        """Whether an earlier deletion already set its deletionTimestamp."""
        return bool(_metadata(self.pod).get("deletionTimestamp"))

    @property
    def phase(self) -> str:
        """status.phase, or "" without one."""
        status = self.pod.get("status")
        phase = status.get("phase") if isinstance(status, dict) else None
        return phase if isinstance(phase, str) else ""

    @property
    def pod_ip(self) -> str:
        """status.podIP, or "" without one."""
        status = self.pod.get("status")
        ip = status.get("podIP") if isinstance(status, dict) else None
        return ip if isinstance(ip, str) else ""


def parse_delete(body: bytes) -> DeleteReview | Answer:
    """The pod DELETE this body asks about, or the answer to give without asking any agent."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return _bad("", "the body is not JSON")
    if not isinstance(document, dict):
        return _bad("", f"expected a JSON object, got {type(document).__name__}")
    request = _request(document)
    if isinstance(request, Answer):
        return request
    uid = request["uid"]
    resource = request.get("resource")
    if (
        request.get("operation") != "DELETE"
        or not isinstance(resource, dict)
        or resource.get("group") != ""
        or resource.get("resource") != "pods"
        or request.get("subResource")
    ):
        return allow(uid, "skipped")
    pod = request.get("oldObject")
    if not isinstance(pod, dict):
        return allow(uid, "no_object", ["not guarded: the review carries no pod (oldObject)"])
    namespace, name = request.get("namespace"), request.get("name")
    return DeleteReview(
        uid,
        namespace if isinstance(namespace, str) else "",
        name[:253] if isinstance(name, str) else "",
        pod,
        request.get("dryRun") is True,
    )


def refuse(uid: str, outcome: str, message: str) -> Answer:
    """A 200 answer refusing the request (403 for the caller), with the message it shows."""
    response = {
        "uid": uid,
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": message[:1024]},
    }
    return Answer(200, {"apiVersion": API_VERSION, "kind": KIND, "response": response}, outcome)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _request(document: Mapping[str, Any]) -> dict[str, Any] | Answer:
    """The review's request, which has a uid; or the 400 answer saying what is missing."""
    request = document.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) else ""
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        seen = f"{_quote(document.get('apiVersion'))} {_quote(document.get('kind'))}"
        return _bad(uid, f"expected apiVersion {API_VERSION} kind {KIND}, got {seen}")
    if not isinstance(request, dict):
        return _bad("", "the review has no `request` object")
    if not uid:
        return _bad("", "the review's request has no uid")
    return request


def _is_pod_create(request: Mapping[str, Any]) -> bool:
    resource = request.get("resource")
    return (
        request.get("operation") == "CREATE"
        and isinstance(resource, dict)
        and resource.get("group") == ""
        and resource.get("resource") == "pods"
        and not request.get("subResource")
    )


def answer(review: PodReview, planned: Planned) -> Answer:
    """Allowed, with the planner's patch (base64 JSON Patch) and warnings."""
    if planned.refused is not None:
        return allow(review.uid, "refused", [f"not injected: {planned.refused}", *planned.warnings])
    if not planned.patch:
        return allow(review.uid, "unchanged", planned.warnings)
    patch = json.dumps(planned.patch, separators=(",", ":")).encode()
    answered = allow(review.uid, "injected", planned.warnings)
    answered.review["response"]["patchType"] = "JSONPatch"
    answered.review["response"]["patch"] = base64.b64encode(patch).decode()
    return answered


def failed(review: PodReview, reason: str) -> Answer:
    """Allowed without a patch: planning failed, so the pod is created as it was sent."""
    return allow(review.uid, "failed", [f"not injected: {reason}; the injector's log has more"])


def allow(uid: str, outcome: str, warnings: list[str] | None = None) -> Answer:
    """A 200 answer allowing the request unchanged."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = [warning_line(w) for w in warnings[:WARNINGS_MAX]]
    return Answer(200, {"apiVersion": API_VERSION, "kind": KIND, "response": response}, outcome)


def _bad(uid: str, message: str) -> Answer:
    response = {"uid": uid, "allowed": True, "status": {"code": 400, "message": message}}
    return Answer(400, {"apiVersion": API_VERSION, "kind": KIND, "response": response}, "bad")


def warning_line(text: str) -> str:
    """One warning: prefixed, on one printable line, at most WARNING_MAX_CHARS characters."""
    line = _WARNING_PREFIX + " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(line) <= WARNING_MAX_CHARS:
        return line
    return line[: WARNING_MAX_CHARS - 3] + "..."


def _quote(value: object) -> str:
    shown = json.dumps(value) if value is not None else "none"
    return shown if len(shown) <= QUOTE_MAX_CHARS else shown[: QUOTE_MAX_CHARS - 3] + "..."
