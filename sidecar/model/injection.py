"""Injection as one pure function: a Pod and the template in, an RFC 6902 JSON Patch out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar.errors import ConfigError
from sidecar.model import injection_checks as checks
from sidecar.model import injection_pod as parts
from sidecar.model.deadline import plan_from_settings
from sidecar.model.injection_pod import pointer
from sidecar.model.injection_settings import checked_settings, problem_of, render, tuned, warning

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.settings import Settings
    from sidecar.settings.injection import InjectionTemplate

#: Keys under the prefix that injection itself reads or writes (not agent settings).
OWN_KEYS = frozenset({"inject", "injected", "mode", "containers", "settings"})


@dataclass(frozen=True)
class Injection:
    """The patch, the warnings (each at most 120 characters) and why a pod is left alone."""

    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None


@dataclass
class _Plan:
    """What plan_patch collects as it walks the pod."""

    template: InjectionTemplate
    token: str
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The agent's `containers` settings and the offline calls kept from earlier preStops.
    containers: list[dict[str, Any]] = field(default_factory=list)
    offline: list[dict[str, Any]] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.warnings.append(warning(text))

    def hook(self, where: str, index: int, container: Mapping[str, Any]) -> None:
        """Aim this container's preStop at the agent, keeping the rest of its lifecycle."""
        hook = parts.hook(self.template, container["name"], self.token)
        if container.get("lifecycle"):
            path, value = pointer("spec", where, index, "lifecycle", "preStop"), hook
        else:
            path, value = pointer("spec", where, index, "lifecycle"), {"preStop": hook}
        self.patch.append({"op": "add", "path": path, "value": value})


def plan_patch(
    pod: Mapping[str, Any],
    template: InjectionTemplate,
    *,
    namespace: str = "",
    token: str | None = None,
) -> Injection:
    """The patch that injects the agent into `pod`; applying it twice changes nothing more.

    `token` is the value of the namespace's token Secret, written in each hook's header: a
    hook's `httpHeaders` cannot read a Secret (docs/injection.md says who can read it). Every
    piece already present is left as it is, so a re-invocation (another webhook added the
    proxy) adds only what is missing; an already injected pod gives an empty patch.
    """
    refused = checks.shape_problem(pod) or checks.refusal(pod, template, token, namespace)
    if refused or not token:
        return Injection(refused=refused or "no hook token")
    prefix = template.annotation_prefix
    annotations: Mapping[str, str] = (pod.get("metadata") or {}).get("annotations") or {}
    spec: Mapping[str, Any] = pod["spec"]
    plan = _Plan(template, token)
    mode = annotations.get(f"{prefix}/mode", template.mode)
    if mode not in ("classic", "native"):
        plan.warn(
            f"annotation {prefix}/mode: expected classic or native, got {mode!r}; "
            f"using {template.mode}"
        )
        mode = template.mode
    kept = _kept_calls(annotations, prefix)
    containers: list[dict[str, Any]] = spec["containers"]
    for index in checks.selected(containers, annotations, template, plan.warnings):
        _app(plan, index, containers[index], kept)
    if not plan.containers:
        return Injection(warnings=plan.warnings, refused="no app container left to coordinate")
    # The template's agent settings first: what injection derives from the pod goes on top.
    shared: dict[str, Any] = json.loads(json.dumps(template.agent_settings))
    settings: dict[str, Any] = {
        **shared,
        "containers": plan.containers,
        "server": {"port": template.port, "mode": mode, "token_file": parts.TOKEN_PATH},
        "pod": {"labels_file": parts.LABELS_PATH},
    }
    inits: list[dict[str, Any]] = spec.get("initContainers") or []
    proxy_index, proxy_native = checks.find_proxy(containers, inits, template)
    if proxy_index is not None:
        _proxy(plan, proxy_index, proxy_native, (inits if proxy_native else containers))
        # Istio's admin ports, unless the template names its own proxy's (a plain Envoy).
        settings["envoy"] = {
            "admin_url": parts.ENVOY_ADMIN_URL,
            "pilot_agent_url": parts.PILOT_AGENT_URL,
            **(shared.get("envoy") or {}),
        }
    if plan.offline:
        settings["offline_calls"] = [*(shared.get("offline_calls") or []), *plan.offline]
    settings, tuning = tuned(annotations, prefix, settings, OWN_KEYS)
    plan.warnings.extend(tuning)
    try:
        loaded = checked_settings(settings)
    except ConfigError as e:
        problem = str(e).splitlines()[0]
        return Injection(
            warnings=plan.warnings, refused=f"the agent refuses its settings: {problem}"
        )
    grace = spec.get("terminationGracePeriodSeconds", parts.DEFAULT_GRACE_SECONDS)
    plan.warnings.extend(_grace_warnings(loaded, grace))
    plan.patch.extend(parts.agent_ops(spec, proxy_native, template, mode, grace))
    plan.patch.extend(parts.annotation_ops(pod, annotations, template, render(settings)))
    return Injection(patch=plan.patch, warnings=plan.warnings)


def _app(
    plan: _Plan,
    index: int,
    container: Mapping[str, Any],
    kept: dict[str, list[dict[str, Any]]],
) -> None:
    """One selected app container: its hook, or why it is left alone."""
    name = container["name"]
    prestop = (container.get("lifecycle") or {}).get("preStop")
    if parts.is_our_hook(prestop, plan.template, name):
        plan.offline.extend(kept.get(name, []))
    elif prestop is not None:
        keep = plan.template.existing_prestop == "keep"
        call = parts.offline_call(container, name) if keep else None
        why = _left_alone(prestop, call, plan.template)
        if why:
            plan.warn(f"container {name}: {why}; left alone, not coordinated")
            return
        if call is not None:
            plan.offline.append(call)
            plan.warn(f"container {name}: its httpGet preStop becomes the agent's offline call")
        else:
            plan.warn(f"container {name}: its sleep preStop is replaced by the coordinated wait")
        plan.hook("containers", index, container)
    else:
        plan.hook("containers", index, container)
    plan.containers.append({"name": name, "role": "app", "ports": parts.tcp_ports(container)})


def _proxy(plan: _Plan, index: int, native: bool, entries: list[dict[str, Any]]) -> None:
    """The mesh proxy: released last, on its inbound capture port and its own ports."""
    proxy = entries[index]
    ports = sorted({parts.ISTIO_INBOUND_PORT, *parts.tcp_ports(proxy)})
    plan.containers.append({"name": proxy["name"], "role": "proxy", "ports": ports})
    prestop = (proxy.get("lifecycle") or {}).get("preStop")
    if parts.is_our_hook(prestop, plan.template, proxy["name"]):
        return
    if prestop is not None:
        plan.warn(
            f"container {proxy['name']}: its preStop is replaced: the agent releases "
            "the proxy once the apps exited"
        )
    plan.hook("initContainers" if native else "containers", index, proxy)


def _left_alone(prestop: object, call: dict[str, Any] | None, template: InjectionTemplate) -> str:
    """Why a container with its own preStop is not coordinated, or empty."""
    if template.existing_prestop == "skip":
        return "it has a preStop of its own (existing_prestop: skip)"
    if isinstance(prestop, dict) and set(prestop) == {"sleep"}:
        return ""
    if call is None:
        return "its exec or tcpSocket preStop cannot be run by the agent"
    problem = problem_of({"containers": [{"name": "app"}], "offline_calls": [call]})
    return f"its httpGet preStop is no valid offline call ({problem})" if problem else ""


def _kept_calls(annotations: Mapping[str, str], prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Offline calls kept from earlier preStops, read back from our settings annotation."""
    try:
        earlier = json.loads(annotations.get(f"{prefix}/settings", "{}"))
        calls = earlier.get("offline_calls", []) if isinstance(earlier, dict) else []
    except ValueError:
        return {}
    kept: dict[str, list[dict[str, Any]]] = {}
    for call in calls if isinstance(calls, list) else []:
        name = call.get("name", "") if isinstance(call, dict) else ""
        if isinstance(name, str) and name.startswith("prestop-"):
            kept.setdefault(name.removeprefix("prestop-"), []).append(call)
    return kept


def _grace_warnings(loaded: Settings, grace: int) -> list[str]:
    """A warning when the app's latest release comes before the shortest drain can end."""
    budget = plan_from_settings(loaded, started_at=0.0, grace_seconds=float(max(grace, 1)))
    phases = loaded.phases
    needed = phases.unroute_fallback_delay_seconds + max(
        phases.quiet_window_seconds, phases.quiesce_min_seconds
    )
    if budget.release_by[0] >= needed:
        return []
    return [
        warning(
            f"terminationGracePeriodSeconds {grace} is short: the app is released by "
            f"{budget.release_by[0]:g} s, a drain needs about {needed:g} s"
        )
    ]
