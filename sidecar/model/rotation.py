"""Whether the pod is still in rotation, decided from one snapshot of EndpointSlices."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sidecar.errors import MalformedAnswerError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The label that names a managed slice's Service (kubernetes-behaviour D1).
SERVICE_LABEL = "kubernetes.io/service-name"


class Rotation(StrEnum):
    """Where the pod stands for one Service, or for all of them."""

    #: Some copy of our endpoint is still ready and not terminating: traffic may still come.
    IN = "in_rotation"
    #: Every copy is ready:false, or the endpoint was removed (D4, D6).
    OUT = "out_of_rotation"
    #: No slice holds the pod at all: nothing in the cluster routes to it by Service.
    NOT_LISTED = "not_in_any_slice"
    #: ready:true while terminating, which only publishNotReadyAddresses gives (D4, D13a):
    #: waiting cannot help; quiesce has to see the traffic stop.
    NEVER_UNREADY = "never_unready"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a slice, with the API's defaults for absent conditions applied."""

    addresses: tuple[str, ...]
    target_uid: str | None
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class Slice:
    """The parts of an EndpointSlice the verdict needs."""

    name: str
    #: None for a slice not managed for a Service (no service-name label): it is ignored.
    service: str | None
    address_type: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class PodKey:
    """How our endpoints are recognised: by targetRef.uid, else by address (D3, D9)."""

    uid: str
    ips: frozenset[str]

    def owns(self, endpoint: Endpoint) -> bool:
        """Whether that endpoint is ours."""
        if endpoint.target_uid and self.uid:
            return endpoint.target_uid == self.uid
        return any(_normal(a) in self.ips for a in endpoint.addresses)


@dataclass(frozen=True)
class ServiceRotation:
    """One Service's view of the pod."""

    service: str
    state: Rotation
    #: Copies of our endpoint across that Service's slices (families and duplicates, D2, D9).
    copies: int


@dataclass(frozen=True)
class Verdict:
    """The whole pod's rotation, and each Service behind it."""

    state: Rotation
    services: tuple[ServiceRotation, ...]

    @property
    def settled(self) -> bool:
        """Whether waiting longer cannot change what the control plane does for us."""
        return self.state is not Rotation.IN


def pod_key(uid: str, ips: Iterable[str]) -> PodKey:
    """The key of our pod; addresses are normalised as the controller does (D2)."""
    return PodKey(uid, frozenset(_normal(ip) for ip in ips))


def services_holding(key: PodKey, slices: Iterable[Slice]) -> frozenset[str]:
    """The Services whose slices hold the pod now."""
    return frozenset(
        s.service for s in slices if s.service and any(key.owns(e) for e in s.endpoints)
    )


def verdict(key: PodKey, services: frozenset[str], slices: Iterable[Slice]) -> Verdict:
    """The pod's rotation over the Services that held it when the shutdown began.

    A Service whose slices no longer hold the pod has removed it (D6.3): it is out. A copy
    that is ready keeps the pod in, even if a duplicate elsewhere is not (D9): traffic can
    follow any copy until the duplicate is gone.
    """
    copies: dict[str, list[Endpoint]] = {name: [] for name in services}
    for s in slices:
        if s.service in copies:
            copies[s.service].extend(e for e in s.endpoints if key.owns(e))
    per_service = tuple(
        ServiceRotation(name, _service_state(copies[name]), len(copies[name]))
        for name in sorted(copies)
    )
    states = {r.state for r in per_service}
    if not per_service:
        state = Rotation.NOT_LISTED
    elif Rotation.IN in states:
        state = Rotation.IN
    elif Rotation.NEVER_UNREADY in states:
        state = Rotation.NEVER_UNREADY
    else:
        state = Rotation.OUT
    return Verdict(state, per_service)


def _service_state(endpoints: list[Endpoint]) -> Rotation:
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return Rotation.OUT
    if all(e.terminating for e in ready):
        return Rotation.NEVER_UNREADY
    return Rotation.IN


def parse_slice(doc: Mapping[str, Any]) -> Slice:
    """Read an EndpointSlice as JSON; a malformed one raises MalformedAnswerError naming it."""
    metadata = _mapping(doc.get("metadata"), "metadata")
    name = str(metadata.get("name", ""))
    labels = _mapping(metadata.get("labels"), f"{name}: metadata.labels")
    service = labels.get(SERVICE_LABEL)
    raw_endpoints = doc.get("endpoints") or []
    if not isinstance(raw_endpoints, list):
        raise MalformedAnswerError(
            f"slice {name}: endpoints: expected a list, got {type(raw_endpoints)}"
        )
    endpoints = tuple(
        _endpoint(e, f"slice {name}: endpoints[{i}]") for i, e in enumerate(raw_endpoints)
    )
    return Slice(
        name, str(service) if service else None, str(doc.get("addressType", "")), endpoints
    )


def _endpoint(doc: object, where: str) -> Endpoint:
    entry = _mapping(doc, where)
    addresses = entry.get("addresses") or []
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise MalformedAnswerError(
            f"{where}.addresses: expected a list of strings, got {addresses!r:.80}"
        )
    conditions = _mapping(entry.get("conditions"), f"{where}.conditions")
    target = _mapping(entry.get("targetRef"), f"{where}.targetRef")
    # API defaults for a condition left out: ready and serving unknown count as true,
    # terminating as false (discovery.k8s.io/v1 EndpointConditions).
    ready = _flag(conditions, "ready", default=True, where=where)
    return Endpoint(
        addresses=tuple(addresses),
        target_uid=str(target["uid"]) if target.get("uid") else None,
        ready=ready,
        serving=_flag(conditions, "serving", default=ready, where=where),
        terminating=_flag(conditions, "terminating", default=False, where=where),
    )


def _flag(conditions: Mapping[str, Any], name: str, *, default: bool, where: str) -> bool:
    value = conditions.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MalformedAnswerError(
            f"{where}.conditions.{name}: expected true or false, got {value!r:.40}"
        )
    return value


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedAnswerError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _normal(address: str) -> str:
    """One spelling per address (IPv6 has many); text that is no address is kept as it is."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address
