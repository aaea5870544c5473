"""Pods and Services as the drill and the tests create them in the control-plane stand-in."""

from __future__ import annotations

from typing import Any

NAMESPACE = "shop"


def pod_object(
    name: str,
    ips: tuple[str, ...] = ("10.1.0.7",),
    *,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    node: str = "node-1",
    grace_seconds: int | None = None,
) -> dict[str, Any]:
    """A running, scheduled pod with IPs (status as the kubelet writes it)."""
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
    }
    if grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = grace_seconds
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {"app": "web"}},
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": ips[0] if ips else "",
            "podIPs": [{"ip": ip} for ip in ips],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service_object(
    name: str,
    *,
    selector: dict[str, str] | None = None,
    families: tuple[str, ...] = ("IPv4",),
    publish_not_ready: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Service selecting pods, with a named target port."""
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {
            "selector": selector or {"app": "web"},
            "ipFamilies": list(families),
            "publishNotReadyAddresses": publish_not_ready,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
