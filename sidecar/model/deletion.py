"""What the API says of our pod's deletion (grace, deadline) and of a container's restart grace."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sidecar.errors import MalformedAnswerError

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class RestartGrace:
    """The grace the kubelet kills a restarting container with (no deletionTimestamp).

    A liveness failure kills the container with its `livenessProbe.terminationGracePeriodSeconds`
    when set (KEP-2238), else with the pod's `spec.terminationGracePeriodSeconds`
    (docs/budget.md). A startup probe's own grace is not read: a container that fails its
    startup probe never started serving, so it has no traffic to drain.
    """

    #: spec.terminationGracePeriodSeconds (the API always fills it in; None if absent).
    pod_seconds: float | None = None
    #: Per container (main, init and native sidecar): livenessProbe.terminationGracePeriodSeconds.
    liveness_seconds: tuple[tuple[str, float], ...] = ()

    def seconds_for(self, containers: frozenset[str]) -> float | None:
        """The shortest grace any of these containers is killed with; None if none is known.

        With no container named, any of them may be the one restarting: the shortest of all.
        """
        probes = dict(self.liveness_seconds)
        if containers:
            known = [probes.get(name, self.pod_seconds) for name in containers]
        else:
            known = [*probes.values(), self.pod_seconds]
        graces = [g for g in known if g is not None]
        return min(graces) if graces else None


@dataclass(frozen=True)
class PodDeletion:
    """The deletion fields of one pod (kubernetes-behaviour A3, A5, A6)."""

    uid: str
    #: deletionTimestamp, in seconds since the epoch: a deadline, not the time of the request.
    deadline_epoch: float | None
    grace_seconds: float | None
    #: status.podIPs (or podIP): how our endpoints are recognised when a slice has no targetRef.
    ips: tuple[str, ...] = ()
    #: What a container's restart would be given, from the pod's spec.
    restart: RestartGrace = field(default_factory=RestartGrace)

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
    grace = _seconds(
        metadata.get("deletionGracePeriodSeconds"), "metadata.deletionGracePeriodSeconds"
    )
    raw_status = doc.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    raw_entries = status.get("podIPs")
    entries: list[Any] = raw_entries if isinstance(raw_entries, list) else []
    ips = tuple(str(e["ip"]) for e in entries if isinstance(e, dict) and e.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    uid = str(metadata.get("uid", ""))
    return PodDeletion(uid, deadline, grace, ips, _restart_grace(doc.get("spec")))


def _restart_grace(raw_spec: object) -> RestartGrace:
    """spec.terminationGracePeriodSeconds and each container's liveness probe grace."""
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    pod = _seconds(spec.get("terminationGracePeriodSeconds"), "spec.terminationGracePeriodSeconds")
    liveness = []
    for kind in ("initContainers", "containers"):
        raw_list = spec.get(kind)
        entries: list[Any] = raw_list if isinstance(raw_list, list) else []
        for index, container in enumerate(entries):
            if not isinstance(container, dict) or not isinstance(container.get("name"), str):
                continue
            probe = container.get("livenessProbe")
            if not isinstance(probe, dict):
                continue
            where = f"spec.{kind}[{index}].livenessProbe.terminationGracePeriodSeconds"
            seconds = _seconds(probe.get("terminationGracePeriodSeconds"), where)
            if seconds is not None:
                liveness.append((container["name"], seconds))
    return RestartGrace(pod, tuple(liveness))


def _seconds(value: object, where: str) -> float | None:
    """An optional whole number of seconds; anything else raises naming the field."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedAnswerError(f"pod: {where}: expected an integer, got {value!r:.40}")
    return float(value)
