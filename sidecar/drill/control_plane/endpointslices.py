"""The EndpointSlice controller of the stand-in: desired slices from a Service and its pods.

Follows kubernetes-behaviour D1-D8: labels and owner, one set of slices per IP family,
endpoint conditions from readiness and deletionTimestamp, membership, the placeholder slice,
packing at most `max_per_slice` endpoints, existing endpoints updated in place.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
import string
from dataclasses import dataclass

from sidecar.drill.control_plane.store import Object, now_rfc3339

SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
_RESERVED = {SERVICE_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL}
_TERMINAL = {"Succeeded", "Failed"}


@dataclass(frozen=True)
class Write:
    """One API call the controller makes; each is its own watch event (D10)."""

    verb: str  # create | update | delete
    slice: Object


def conditions(pod: Object, publish_not_ready: bool) -> dict[str, bool]:
    """D4: serving from Ready, terminating from deletionTimestamp, ready from both."""
    status_conditions = pod.get("status", {}).get("conditions") or []
    serving = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status_conditions)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    return {
        "ready": publish_not_ready or (serving and not terminating),
        "serving": serving,
        "terminating": terminating,
    }


def selects(service: Object, pod: Object) -> bool:
    """D5: the selector matches, the pod is not terminal, has an IP and a node (unless pNRA)."""
    selector = service.get("spec", {}).get("selector") or {}
    if not selector:
        return False  # D1: slices are managed only for Services with a selector
    labels = pod["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    status = pod.get("status", {})
    if status.get("phase") in _TERMINAL or not _pod_ips(pod):
        return False
    pnra = bool(service["spec"].get("publishNotReadyAddresses"))
    return pnra or bool(pod.get("spec", {}).get("nodeName"))


def _pod_ips(pod: Object) -> list[str]:
    status = pod.get("status", {})
    ips = [entry.get("ip", "") for entry in status.get("podIPs") or []]
    return [ip for ip in ips if ip] or ([status["podIP"]] if status.get("podIP") else [])


def _family(ip: str) -> str:
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


def _ports(service: Object, pod: Object) -> list[Object]:
    """Each Service port resolved against the pod; a named port the pod lacks is left out."""
    named = {
        p["name"]: p["containerPort"]
        for c in pod.get("spec", {}).get("containers", [])
        for p in c.get("ports") or []
        if p.get("name")
    }
    resolved = []
    for port in service["spec"].get("ports") or []:
        target = port.get("targetPort", port["port"])
        number = named.get(target) if isinstance(target, str) else target
        if number is not None:
            resolved.append(
                {
                    "name": port.get("name", ""),
                    "port": number,
                    "protocol": port.get("protocol", "TCP"),
                }
            )
    return resolved


def endpoint(service: Object, pod: Object, family: str) -> Object:
    """D3: the endpoint of one pod in one family's slice."""
    meta, spec = pod["metadata"], pod.get("spec", {})
    result: Object = {
        "addresses": [
            ipaddress.ip_address(ip).compressed for ip in _pod_ips(pod) if _family(ip) == family
        ],
        "conditions": conditions(pod, bool(service["spec"].get("publishNotReadyAddresses"))),
        "targetRef": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if spec.get("nodeName"):
        result["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        result["hostname"] = spec["hostname"]
    return result


def _new_slice(service: Object, family: str, ports: list[Object]) -> Object:
    meta = service["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _RESERVED}
    labels[SERVICE_LABEL] = meta["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if service["spec"].get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {TRIGGER_ANNOTATION: now_rfc3339()},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": family,
        "endpoints": [],
        "ports": ports,
    }


def reconcile(
    service: Object, pods: list[Object], slices: list[Object], *, max_per_slice: int = 100
) -> list[Write]:
    """The writes that bring this Service's slices to the desired state."""
    families = service["spec"].get("ipFamilies") or ["IPv4"]
    # Desired endpoints by (family, resolved ports), keyed by pod uid.
    desired: dict[tuple[str, str], dict[str, Object]] = {}
    ports_of: dict[tuple[str, str], list[Object]] = {}
    for pod in pods:
        if not selects(service, pod):
            continue
        ports = _ports(service, pod)
        for family in families:
            ep = endpoint(service, pod, family)
            if ep["addresses"]:
                group = (family, repr(ports))
                desired.setdefault(group, {})[pod["metadata"]["uid"]] = ep
                ports_of[group] = ports
    writes: list[Write] = []
    for family in families:
        mine = [s for s in slices if s.get("addressType") == family]
        groups = {g: eps for g, eps in desired.items() if g[0] == family}
        writes += _reconcile_family(service, family, groups, ports_of, mine, max_per_slice)
    writes += [Write("delete", s) for s in slices if s.get("addressType") not in families]
    return writes


def _reconcile_family(
    service: Object,
    family: str,
    groups: dict[tuple[str, str], dict[str, Object]],
    ports_of: dict[tuple[str, str], list[Object]],
    slices: list[Object],
    max_per_slice: int,
) -> list[Write]:
    if not groups:
        return _placeholder(service, family, slices)
    kept, changed, placed = _update_in_place(family, groups, slices)
    creates: list[Object] = []
    for group, wanted in groups.items():
        new = [ep for uid, ep in wanted.items() if (group, uid) not in placed]
        new = _fill(kept, changed, group[1], new, max_per_slice)
        while new:
            fresh = _new_slice(service, family, ports_of[group])
            fresh["endpoints"], new = new[:max_per_slice], new[max_per_slice:]
            creates.append(fresh)
    writes = [Write("create", s) for s in creates]
    for s in kept:
        if not s["endpoints"]:
            writes.append(Write("delete", s))
        elif s["metadata"]["name"] in changed:
            s["metadata"].setdefault("annotations", {})[TRIGGER_ANNOTATION] = now_rfc3339()
            writes.append(Write("update", s))
    return writes


def _update_in_place(
    family: str, groups: dict[tuple[str, str], dict[str, Object]], slices: list[Object]
) -> tuple[list[Object], set[str], set[tuple[tuple[str, str], str]]]:
    """D8: an existing endpoint is updated in the slice that holds it; others are dropped."""
    kept, changed, placed = [], set(), set()
    for original in slices:
        group = (family, repr(original.get("ports") or []))
        wanted = groups.get(group, {})
        updated = copy.deepcopy(original)
        updated["endpoints"] = []
        for ep in original.get("endpoints") or []:
            uid = (ep.get("targetRef") or {}).get("uid", "")
            if uid in wanted and (group, uid) not in placed:
                updated["endpoints"].append(wanted[uid])
                placed.add((group, uid))
        if updated != original:
            changed.add(original["metadata"]["name"])
        kept.append(updated)
    return kept, changed, placed


def _fill(
    kept: list[Object], changed: set[str], ports: str, new: list[Object], max_per_slice: int
) -> list[Object]:
    """Place new endpoints in existing slices; returns those left for new slices.

    D8: slices already being written come first, fullest first; an unchanged slice is used
    only if it can take them all.
    """
    candidates = sorted(
        (s for s in kept if repr(s.get("ports") or []) == ports),
        key=lambda s: (s["metadata"]["name"] not in changed, -len(s["endpoints"])),
    )
    for target in candidates:
        room = max_per_slice - len(target["endpoints"])
        if not new or room <= 0:
            continue
        if target["metadata"]["name"] not in changed and room < len(new):
            continue
        target["endpoints"].extend(new[:room])
        new = new[room:]
        changed.add(target["metadata"]["name"])
    return new


def _placeholder(service: Object, family: str, slices: list[Object]) -> list[Write]:
    """D7: a Service with no endpoints in a family keeps exactly one empty slice of it."""
    if not slices:
        return [Write("create", _new_slice(service, family, []))]
    first, rest = slices[0], slices[1:]
    writes = [Write("delete", s) for s in rest]
    if first.get("endpoints") or first.get("ports"):
        emptied = copy.deepcopy(first)
        emptied["endpoints"], emptied["ports"] = [], []
        writes.append(Write("update", emptied))
    return writes
