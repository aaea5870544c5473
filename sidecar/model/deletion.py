"""What the API says of our pod's deletion: whether it is deleted, its grace, its deadline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sidecar.errors import MalformedAnswerError

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class PodDeletion:
    """The deletion fields of one pod (kubernetes-behaviour A3, A5, A6)."""

    uid: str
    #: deletionTimestamp, in seconds since the epoch: a deadline, not the time of the request.
    deadline_epoch: float | None
    grace_seconds: float | None
    #: status.podIPs (or podIP): how our endpoints are recognised when a slice has no targetRef.
    ips: tuple[str, ...] = ()

    @property
    def deleting(self) -> bool:
        """Whether the pod is being deleted (not merely a container restarting)."""
        return self.deadline_epoch is not None


def read_deletion(doc: Mapping[str, Any]) -> PodDeletion:
    """Read a Pod as JSON; a malformed one raises MalformedAnswerError naming the field."""
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise MalformedAnswerError("pod: metadata: expected an object")
    stamp = metadata.get("deletionTimestamp")
    deadline = None
    if stamp is not None:
        try:
            deadline = datetime.fromisoformat(str(stamp)).timestamp()
        except ValueError:
            raise MalformedAnswerError(
                f"pod: metadata.deletionTimestamp: expected RFC 3339, got {stamp!r:.40}"
            ) from None
    grace = metadata.get("deletionGracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise MalformedAnswerError(
            f"pod: metadata.deletionGracePeriodSeconds: expected an integer, got {grace!r:.40}"
        )
    raw_status = doc.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    raw_entries = status.get("podIPs")
    entries: list[Any] = raw_entries if isinstance(raw_entries, list) else []
    ips = tuple(str(e["ip"]) for e in entries if isinstance(e, dict) and e.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    return PodDeletion(
        str(metadata.get("uid", "")), deadline, float(grace) if grace is not None else None, ips
    )
