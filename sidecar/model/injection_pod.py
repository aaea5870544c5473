"""The pieces injection adds to a pod and the patch operations that add them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sidecar.settings.injection import PODINFO_DIR, TOKEN_DIR
from sidecar.settings.schema import TOKEN_HEADER

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.settings.injection import InjectionTemplate

#: Where the agent finds its settings and the pod's labels (a downward-API volume).
SETTINGS_PATH = f"{PODINFO_DIR}/settings.yaml"
LABELS_PATH = f"{PODINFO_DIR}/labels"
#: Where the token Secret is mounted.
TOKEN_PATH = f"{TOKEN_DIR}/token"
#: Envoy's inbound capture port (Istio sidecar mode) and the admin APIs the agent drives.
ISTIO_INBOUND_PORT = 15006
ENVOY_ADMIN_URL = "http://127.0.0.1:15000"
PILOT_AGENT_URL = "http://127.0.0.1:15020"
#: Istio's annotation of inbound ports Envoy must not capture: the kubelet's hook calls.
ISTIO_EXCLUDE_INBOUND = "traffic.sidecar.istio.io/excludeInboundPorts"
#: The kubelet's default grace period when the pod spec sets none.
DEFAULT_GRACE_SECONDS = 30


def pointer(*keys: str | int) -> str:
    """A JSON Pointer (RFC 6901) to these keys."""
    return "".join("/" + str(k).replace("~", "~0").replace("/", "~1") for k in keys)


def volume_names(template: InjectionTemplate) -> tuple[str, str]:
    """The token volume's name and the pod-info volume's name."""
    return f"{template.container_name}-token", f"{template.container_name}-podinfo"


def secret_volumes(template: InjectionTemplate) -> list[tuple[str, str, str]]:
    """(volume name, Secret name, directory) of each of the template's extra Secrets."""
    return [
        (f"{template.container_name[:48]}-secret-{index}", name, path)
        for index, (name, path) in enumerate(template.secret_mounts.items())
    ]


def volumes(template: InjectionTemplate) -> list[dict[str, Any]]:
    """The token Secret (readable by the agent's non-root user), the pod-info files, extras."""
    token, podinfo = volume_names(template)
    settings_field = f"metadata.annotations['{template.annotation_prefix}/settings']"
    extras = [
        {"name": volume, "secret": {"secretName": name, "defaultMode": 0o444, "optional": True}}
        for volume, name, _ in secret_volumes(template)
    ]
    return [
        {
            "name": token,
            "secret": {
                "secretName": template.token_secret,
                "items": [{"key": template.token_secret_key, "path": "token"}],
                "defaultMode": 0o444,
            },
        },
        {
            "name": podinfo,
            "downwardAPI": {
                "items": [
                    {"path": "settings.yaml", "fieldRef": {"fieldPath": settings_field}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                ]
            },
        },
        *extras,
    ]


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def agent_container(template: InjectionTemplate, *, native: bool, grace: int) -> dict[str, Any]:
    """The agent: downward-API environment, probes, non-root and read-only, hook port by number."""
    token, podinfo = volume_names(template)
    resources = template.resources
    requests = {"cpu": resources.cpu_request, "memory": resources.memory_request}
    limits = {"cpu": resources.cpu_limit, "memory": resources.memory_limit}
    container: dict[str, Any] = {
        "name": template.container_name,
        "image": template.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["shutdown-coordinator"],
        "args": ["agent", "-c", SETTINGS_PATH],
        "ports": [{"name": "shutdown-hooks", "containerPort": template.port, "protocol": "TCP"}],
        "env": [
            {"name": "POD_NAME", **_field("metadata.name")},
            {"name": "POD_NAMESPACE", **_field("metadata.namespace")},
            {"name": "POD_UID", **_field("metadata.uid")},
            {"name": "POD_IPS", **_field("status.podIPs")},
            {"name": "HOST_IP", **_field("status.hostIP")},
            {"name": "TERMINATION_GRACE_PERIOD_SECONDS", "value": str(grace)},
        ],
        "resources": {
            "requests": {k: v for k, v in requests.items() if v},
            "limits": {k: v for k, v in limits.items() if v},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": template.port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": template.port},
            "periodSeconds": 5,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": template.run_as_user,
            "runAsGroup": template.run_as_user,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": token, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": podinfo, "mountPath": PODINFO_DIR, "readOnly": True},
            *(
                {"name": volume, "mountPath": path, "readOnly": True}
                for volume, _, path in secret_volumes(template)
            ),
        ],
    }
    if native:
        container["restartPolicy"] = "Always"  # a native sidecar (C1)
    return container


def hook(template: InjectionTemplate, container: str, token: str) -> dict[str, Any]:
    """The httpGet preStop aimed at the agent.

    The port is a number (a name resolves only in the hook's own container) and the token is
    in the header, since a hook cannot read a Secret.
    """
    return {
        "httpGet": {
            "path": f"/prestop/{container}",
            "port": template.port,
            "httpHeaders": [{"name": TOKEN_HEADER, "value": token}],
        }
    }


def is_our_hook(prestop: object, template: InjectionTemplate, container: str) -> bool:
    """Whether this preStop already calls the agent for this container."""
    if not isinstance(prestop, dict) or not isinstance(prestop.get("httpGet"), dict):
        return False
    get: dict[str, object] = prestop["httpGet"]
    return get.get("port") == template.port and get.get("path") == f"/prestop/{container}"


def tcp_ports(container: Mapping[str, Any]) -> list[int]:
    """The container's declared TCP ports (UDP and SCTP carry no connection to drain)."""
    return [
        p["containerPort"]
        for p in container.get("ports") or []
        if p.get("protocol", "TCP") == "TCP" and isinstance(p.get("containerPort"), int)
    ]


def offline_call(container: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """An httpGet preStop as the agent's offline call (`keep`), or None for other hooks."""
    get = ((container.get("lifecycle") or {}).get("preStop") or {}).get("httpGet")
    if not isinstance(get, dict):
        return None
    port = get.get("port")
    if isinstance(port, str):  # a named port resolves in the hook's own container
        named = [p for p in container.get("ports") or [] if p.get("name") == port]
        port = named[0].get("containerPort") if named else None
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    scheme = "https" if str(get.get("scheme", "HTTP")).upper() == "HTTPS" else "http"
    host = get.get("host") or "127.0.0.1"  # the pod shares one network namespace
    path = str(get.get("path") or "/")
    headers = [
        {"name": h.get("name"), "value": h.get("value", "")}
        for h in get.get("httpHeaders") or []
        if isinstance(h, dict)
    ]
    return {
        "name": f"prestop-{name}",
        "method": "GET",
        "url": f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}",
        "headers": headers,
        "expect_statuses": [200, 201, 202, 204],
    }


def agent_ops(
    spec: Mapping[str, Any],
    proxy_native: bool,
    template: InjectionTemplate,
    mode: str,
    grace: int,
) -> list[dict[str, Any]]:
    """The agent container and its volumes, each unless already there.

    They come after the hook operations: inserting an init container moves the indexes after it.
    """
    ops: list[dict[str, Any]] = []
    containers: list[dict[str, Any]] = spec["containers"]
    inits: list[dict[str, Any]] = spec.get("initContainers") or []
    present = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    missing = [v for v in volumes(template) if v["name"] not in present]
    if not spec.get("volumes") and missing:
        ops.append({"op": "add", "path": "/spec/volumes", "value": missing})
    else:
        ops.extend({"op": "add", "path": "/spec/volumes/-", "value": v} for v in missing)
    if any(c["name"] == template.container_name for c in [*containers, *inits]):
        return ops
    agent = agent_container(template, native=mode == "native", grace=grace)
    if mode == "classic":
        ops.append({"op": "add", "path": "/spec/containers/-", "value": agent})
    elif not inits:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": [agent]})
    else:
        # Native sidecars stop in reverse order of declaration (C3): before the proxy, the
        # agent stops after it; otherwise last, after every init container that runs first.
        proxy = [i for i, c in enumerate(inits) if c["name"] == template.proxy_container]
        at: str | int = proxy[0] if proxy and proxy_native else "-"
        ops.append({"op": "add", "path": pointer("spec", "initContainers", at), "value": agent})
    return ops


def annotation_ops(
    pod: Mapping[str, Any],
    annotations: Mapping[str, str],
    template: InjectionTemplate,
    rendered: str,
) -> list[dict[str, Any]]:
    """The marker, the settings file's content and the Istio exclusion, each only if it changes."""
    prefix = template.annotation_prefix
    wanted = {f"{prefix}/injected": template.version, f"{prefix}/settings": rendered}
    excluded = [p.strip() for p in annotations.get(ISTIO_EXCLUDE_INBOUND, "").split(",")]
    excluded = [p for p in excluded if p]
    if str(template.port) not in excluded:
        wanted[ISTIO_EXCLUDE_INBOUND] = ",".join([*excluded, str(template.port)])
    changed = {k: v for k, v in wanted.items() if annotations.get(k) != v}
    if not changed:
        return []
    if not pod.get("metadata"):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": changed}}]
    if not pod["metadata"].get("annotations"):
        return [{"op": "add", "path": "/metadata/annotations", "value": changed}]
    return [
        {"op": "add", "path": pointer("metadata", "annotations", k), "value": v}
        for k, v in changed.items()
    ]
