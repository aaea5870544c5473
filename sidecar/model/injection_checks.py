"""Whether and where a pod can be injected: its shape, refusals, the proxy, the chosen apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sidecar.model import injection_pod as parts
from sidecar.model.injection_settings import warning

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from sidecar.settings.injection import InjectionTemplate


def shape_problem(pod: Mapping[str, Any]) -> str | None:
    """Why the object is no pod spec this function can read, or None."""
    return next(_shape_problems(pod), None)


def _shape_problems(pod: Mapping[str, Any]) -> Iterator[str]:
    metadata = pod.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        yield "metadata: expected a mapping"
        return
    annotations = (metadata or {}).get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        yield "metadata.annotations: expected a mapping of strings to strings"
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        yield "spec: expected a mapping"
        return
    for key in ("containers", "initContainers"):
        entries = spec.get(key) if key == "containers" else spec.get(key) or []
        if not isinstance(entries, list) or (key == "containers" and not entries):
            yield f"spec.{key}: expected a list of containers"
            continue
        for index, entry in enumerate(entries):
            problem = _container_problem(entry)
            if problem:
                yield f"spec.{key}[{index}]{problem}"
    grace = spec.get("terminationGracePeriodSeconds", 0)
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
        yield "spec.terminationGracePeriodSeconds: expected a whole number of seconds"
    if not isinstance(spec.get("volumes") or [], list):
        yield "spec.volumes: expected a list"


def refusal(
    pod: Mapping[str, Any], template: InjectionTemplate, token: str | None, namespace: str
) -> str | None:
    """Why the pod (already of the right shape) is left alone as a whole, or None."""
    prefix = template.annotation_prefix
    spec = pod["spec"]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if spec.get("hostNetwork") is True:
        return (
            "hostNetwork: the agent would share the node's network namespace, so it "
            "could not tell the pod's connections from the node's"
        )
    if annotations.get(f"{prefix}/inject", "").lower() in {"false", "no", "disabled"}:
        return f"annotation {prefix}/inject says no"
    marker = annotations.get(f"{prefix}/injected")
    if marker is not None and marker != template.version:
        return (
            f"already injected by version {marker} (this is {template.version}); "
            "inject the original manifest instead"
        )
    if not token:
        where = f" in namespace {namespace}" if namespace else ""
        return f"no hook token: the Secret {template.token_secret}{where} could not be read"
    for entries in (spec["containers"], spec.get("initContainers") or []):
        for container in entries:
            if container["name"] == template.container_name:
                continue
            if template.port in parts.tcp_ports(container):
                return f"container {container['name']} already uses port {template.port}"
    return None


def find_proxy(
    containers: list[dict[str, Any]], inits: list[dict[str, Any]], template: InjectionTemplate
) -> tuple[int | None, bool]:
    """The proxy's index, and whether it is a native sidecar (an init container)."""
    for index, container in enumerate(containers):
        if container["name"] == template.proxy_container:
            return index, False
    for index, container in enumerate(inits):
        if container["name"] == template.proxy_container and (
            container.get("restartPolicy") == "Always"
        ):
            return index, True
    return None, False


def selected(
    containers: list[dict[str, Any]],
    annotations: Mapping[str, str],
    template: InjectionTemplate,
    warnings: list[str],
) -> list[int]:
    """Indexes of the app containers to coordinate: the annotation's list, else every one."""
    apps = {
        c["name"]: i
        for i, c in enumerate(containers)
        if c["name"] not in {template.proxy_container, template.container_name}
    }
    key = f"{template.annotation_prefix}/containers"
    if key not in annotations:
        return list(apps.values())
    names = [n.strip() for n in annotations[key].split(",") if n.strip()]
    unknown = [n for n in names if n not in apps]
    if unknown:
        warnings.append(warning(f"annotation {key}: no app container {', '.join(unknown)}"))
    chosen = [apps[n] for n in names if n in apps]
    if not chosen:
        warnings.append(warning(f"annotation {key}: names no app container; using every one"))
        return list(apps.values())
    return sorted(set(chosen))


def _container_problem(entry: object) -> str:
    """What is wrong with one container entry (after its key), or empty."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return ": expected a container with a name"
    ports = entry.get("ports") or []
    if not isinstance(ports, list) or not all(isinstance(p, dict) for p in ports):
        return ".ports: expected a list of ports"
    if not isinstance(entry.get("lifecycle") or {}, dict):
        return ".lifecycle: expected a mapping"
    return ""
