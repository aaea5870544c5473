"""What a pod DELETE does to the stored pod (kubernetes-behaviour A1-A8), as a pure decision."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from sidecar.drill.control_plane.store import Object, now_rfc3339, parse_rfc3339

_TERMINAL = {"Succeeded", "Failed"}


class DeleteRefused(Exception):  # noqa: N818 - reads as what happened, like the API's reasons
    """The API would answer with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True)
class Deletion:
    """`update`: store `pod` (graceful); `unchanged`: answer with it; `remove`: delete it now."""

    action: Literal["update", "unchanged", "remove"]
    pod: Object


def requested_grace(options: Object, query_grace: str | None) -> int | None:
    """DeleteOptions.gracePeriodSeconds (body first, then the query), validated."""
    value = options.get("gracePeriodSeconds")
    if value is None and query_grace is not None:
        value = query_grace
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DeleteRefused(
            400, "BadRequest", f"gracePeriodSeconds: expected an integer, got {value!r:.40}"
        ) from None


def decide(pod: Object, options: Object, query_grace: str | None, now: float) -> Deletion:
    """The effect of one DELETE on `pod` at wall time `now`."""
    meta = pod["metadata"]
    _check_preconditions(meta, options.get("preconditions") or {})
    asked = requested_grace(options, query_grace)
    if asked is not None and asked < 0:
        asked = 1  # A2
    if meta.get("deletionTimestamp"):
        return _again(pod, asked, now)
    # A1: the request's grace, else the spec's; 0 for unscheduled or finished pods.
    grace = asked if asked is not None else pod["spec"].get("terminationGracePeriodSeconds", 30)
    if not pod["spec"].get("nodeName") or pod.get("status", {}).get("phase") in _TERMINAL:
        grace = 0
    updated = copy.deepcopy(pod)
    if grace == 0:
        # A6: both fields are written, then the object goes (unless finalizers hold it).
        updated["metadata"]["deletionTimestamp"] = now_rfc3339()
        updated["metadata"]["deletionGracePeriodSeconds"] = 0
        return Deletion("update" if meta.get("finalizers") else "remove", updated)
    # A3: deletionTimestamp is the deadline, not the time of the request.
    updated["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
    updated["metadata"]["deletionGracePeriodSeconds"] = grace
    if meta.get("generation", 0) > 0:
        updated["metadata"]["generation"] = meta["generation"] + 1
    return Deletion("update", updated)


def _again(pod: Object, asked: int | None, now: float) -> Deletion:
    """A5: a DELETE on a pod that is already terminating may only shorten its grace."""
    meta = pod["metadata"]
    current = meta.get("deletionGracePeriodSeconds")
    if not current:
        return Deletion("remove", pod)
    if asked is None or asked >= current:
        return Deletion("unchanged", pod)
    deadline = parse_rfc3339(meta["deletionTimestamp"]) - current + asked
    if deadline < now:
        deadline = now
        asked = 1 if asked else 0  # someone else still does the final delete
    updated = copy.deepcopy(pod)
    updated["metadata"]["deletionTimestamp"] = now_rfc3339(deadline - now)
    updated["metadata"]["deletionGracePeriodSeconds"] = asked
    if asked == 0 and not meta.get("finalizers"):
        return Deletion("remove", updated)
    return Deletion("update", updated)


def _check_preconditions(meta: Object, preconditions: Object) -> None:
    """A8: a uid or resourceVersion that does not match is a 409 Conflict."""
    for field, ours in (("uid", meta.get("uid")), ("resourceVersion", meta.get("resourceVersion"))):
        wanted = preconditions.get(field)
        if wanted is not None and wanted != ours:
            raise DeleteRefused(
                409,
                "Conflict",
                f"Precondition failed: {field} in precondition: {wanted}, {field} in object "
                f"meta: {ours}",
            )
