"""Rules that span several fields, each a pure function from settings to `key: message` errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.settings.constraints import clip, show
from sidecar.settings.registry_etcd import EtcdRegistrySettings, etcd_problems

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.settings.schema import Settings

Errors = dict[str, str]


def containers(settings: Settings) -> Errors:
    """At least one app container, at most one proxy, no name twice."""
    errors: Errors = {}
    specs = settings.containers
    if not specs:
        errors["containers"] = "expected at least one container whose hook we answer"
    for index, spec in enumerate(specs):
        if any(s.name == spec.name for s in specs[:index]):
            key = f"containers[{index}].name"
            errors[key] = f"container {spec.name!r} is listed twice"
    if sum(s.role == "proxy" for s in specs) > 1:
        errors["containers"] = "expected at most one container with role proxy"
    elif specs and all(s.role == "proxy" for s in specs):
        errors["containers"] = "expected at least one container with role app"
    return errors


def release_order(settings: Settings) -> Errors:
    """Every app container exactly once, in non-empty groups (empty means all apps together)."""
    apps = [s.name for s in settings.containers if s.role == "app"]
    if not settings.release_order:
        return {}
    errors: Errors = {}
    seen: list[str] = []
    for index, group in enumerate(settings.release_order):
        key = f"release_order[{index}]"
        if not group:
            errors[key] = "expected a non-empty list of container names, got []"
        for name in group:
            if name not in apps:
                errors[key] = (
                    f"{show(name)} is not an app container (apps: {clip(', '.join(apps))})"
                )
            elif name in seen:
                errors[key] = f"{show(name)} is already in an earlier group"
            seen.append(name)
    missing = [a for a in apps if a not in seen]
    if missing:
        errors["release_order"] = (
            f"every app container must be listed; missing {clip(', '.join(missing))}"
        )
    return errors


def quiesce_bounds(settings: Settings) -> Errors:
    """The quiesce floor is not above its cap; the learned window's bounds are in order."""
    phases = settings.phases
    errors: Errors = {}
    if phases.quiesce_min_seconds > phases.quiesce_max_seconds:
        errors["phases.quiesce_min_seconds"] = (
            f"expected at most quiesce_max_seconds "
            f"({phases.quiesce_max_seconds}), got {phases.quiesce_min_seconds}"
        )
    if phases.quiet_window_min_seconds > phases.quiet_window_seconds:
        errors["phases.quiet_window_min_seconds"] = (
            f"expected at most quiet_window_seconds "
            f"({phases.quiet_window_seconds}), got {phases.quiet_window_min_seconds}"
        )
    return errors


def token(settings: Settings) -> Errors:
    """Hooks need a token unless the file says this is a local experiment."""
    if settings.server.token is not None or settings.server.allow_unauthenticated:
        return {}
    return {
        "server.token": "required (set SHUTDOWN_COORDINATOR_TOKEN or server.token_file), "
        "or set server.allow_unauthenticated: true for a local experiment"
    }


def pod_for_the_api(settings: Settings) -> Errors:
    """With the API on, the pod's name and namespace must be known."""
    if not settings.kubernetes.enabled or (settings.pod.name and settings.pod.namespace):
        return {}
    return {
        "kubernetes": "the API is on, so POD_NAME and POD_NAMESPACE (downward API) or "
        "pod.name and pod.namespace are required; set kubernetes.enabled: false to go without"
    }


def registries(settings: Settings) -> Errors:
    """Each registry's rules across its own fields (an etcd key or a prefix, not both)."""
    errors: Errors = {}
    for index, entry in enumerate(settings.registries):
        if isinstance(entry, EtcdRegistrySettings):
            for problem in etcd_problems(entry):
                field, message = problem.split(": ", 1)
                errors[f"registries[{index}].{field}"] = message
    return errors


RULES: tuple[Callable[[Settings], Errors], ...] = (
    containers,
    release_order,
    quiesce_bounds,
    token,
    pod_for_the_api,
    registries,
)
