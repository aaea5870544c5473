"""The injected agent's settings: annotations under the prefix, checked by its own schema."""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any, get_args, get_origin, get_type_hints

from sidecar.errors import ConfigError
from sidecar.settings import Settings, from_mapping
from sidecar.settings.constraints import clip
from sidecar.settings.injection import InjectionTemplate
from sidecar.settings.reader import INVALID, Reader, parse_text

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

#: Settings groups a pod may tune by annotation; the rest belongs to the template or the pod.
TUNABLE_GROUPS = ("budget", "phases", "traffic", "envoy", "kubernetes", "server")
#: Keys the injection itself owns, or that name files of the agent's own image.
NOT_TUNABLE = frozenset(
    {
        "server.port",
        "server.host",
        "server.token",
        "server.token_file",
        "server.allow_unauthenticated",
        "server.mode",
        "kubernetes.kubeconfig",
    }
)
#: What the downward API gives the agent at run time, for the check.
_DOWNWARD_API = {"POD_NAME": "injected", "POD_NAMESPACE": "injected"}
#: A warning (webhook answers carry them) is at most this long.
WARNING_MAX_CHARS = 120


def warning(text: str) -> str:
    """One warning line, at most WARNING_MAX_CHARS characters."""
    return clip(" ".join(text.split()), WARNING_MAX_CHARS)


def tunable_keys() -> dict[str, tuple[str, str, Any]]:
    """Annotation key (after the prefix) -> (group, field, type), dashes or underscores alike.

    Every key is reachable as `group.key`; a key no other group has is reachable alone too.
    """
    full: dict[str, tuple[str, str, Any]] = {}
    hints = get_type_hints(Settings)
    for group in TUNABLE_GROUPS:
        group_hints = get_type_hints(hints[group], include_extras=True)
        for f in dataclasses.fields(hints[group]):
            if f"{group}.{f.name}" not in NOT_TUNABLE:
                full[f"{group}.{f.name}"] = (group, f.name, group_hints[f.name])
    names = [key.split(".", 1)[1] for key in full]
    short = {k.split(".", 1)[1]: v for k, v in full.items() if names.count(k.split(".", 1)[1]) == 1}
    return {**full, **short}


_TUNABLE = tunable_keys()


def _base(hint: Any) -> Any:
    while get_origin(hint) is typing.Annotated:
        hint = get_args(hint)[0]
    options = [o for o in get_args(hint) if o is not type(None)]
    return options[0] if get_origin(hint) in {typing.Union, type(int | str)} else hint


def parse_value(hint: Any, text: str) -> Any:
    """An annotation's text as the settings file would hold it; the schema judges the rest."""
    if _base(hint) is bool:
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return parse_text(hint, text)


def tuned(
    annotations: Mapping[str, str], prefix: str, base: dict[str, Any], own: frozenset[str]
) -> tuple[dict[str, Any], list[str]]:
    """`base` with every valid settings annotation applied, and a warning per skipped one.

    Annotations are applied in name order, each checked by the agent's schema (`from_mapping`)
    on top of those accepted before it, so a combination the cross-field rules refuse is
    caught too. `own` names the prefix's keys the injection itself uses.
    """
    settings = json.loads(json.dumps(base))
    warnings: list[str] = []
    for name in sorted(annotations):
        if not name.startswith(f"{prefix}/") or name[len(prefix) + 1 :] in own:
            continue
        key = name[len(prefix) + 1 :]
        value = annotations[name]
        found = _TUNABLE.get(key.replace("-", "_"))
        if found is None:
            warnings.append(warning(f"annotation {name} skipped: unknown setting"))
            continue
        if not isinstance(value, str) or not all(" " <= c <= "~" for c in value):
            warnings.append(warning(f"annotation {name} skipped: expected printable ASCII text"))
            continue
        group, field, hint = found
        candidate = json.loads(json.dumps(settings))
        candidate.setdefault(group, {})[field] = parse_value(hint, value)
        problem = problem_of(candidate)
        if problem:
            warnings.append(
                warning(f"annotation {name} skipped: {problem.removeprefix(f'{group}.{field}: ')}")
            )
            continue
        settings = candidate
    return settings, warnings


#: What injection derives from each pod; a template's agent settings may not set it.
PER_POD_GROUPS = ("containers", "release_order", "pod", "server")


def template_from(data: object) -> InjectionTemplate:
    """A parsed template file read by the schema; ConfigError lists every bad key."""
    reader = Reader({})
    template = reader.read(InjectionTemplate, data, "")
    if template is INVALID or reader.errors:  # an invalid optional key falls back: still an error
        raise ConfigError("invalid template: " + "; ".join(reader.errors.values()))
    problem = template_settings_problem(template.agent_settings)
    if problem:
        raise ConfigError(f"invalid template: {problem}")
    result: InjectionTemplate = template
    return result


def template_settings_problem(agent_settings: Mapping[str, object]) -> str:
    """Why a template's `agent_settings` cannot be given to every pod, or empty."""
    for group in PER_POD_GROUPS:
        if group in agent_settings:
            return (
                f"agent_settings.{group}: injection sets it for each pod "
                "(annotations tune server keys)"
            )
    problem = problem_of({"containers": [{"name": "app"}], **agent_settings})
    return f"agent_settings.{problem}" if problem else ""


def problem_of(settings: dict[str, Any]) -> str:
    """The first error the agent would report for these settings, or empty."""
    try:
        checked_settings(settings)
    except ConfigError as e:
        return str(e).splitlines()[0]
    return ""


def checked_settings(settings: dict[str, Any]) -> Settings:
    """These settings read by the agent's schema; ConfigError when it refuses them.

    The token file and the labels file are not read: the check is pure. The pod's name and
    namespace come from the downward API at run time, so stand-ins are given here. The pods
    of one workload carry the same annotations, so a verdict is remembered (bounded).
    """
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    verdict = _check(canonical) if len(canonical) <= _REMEMBERED_MAX_CHARS else _read(settings)
    if isinstance(verdict, str):
        raise ConfigError(verdict)
    return verdict


#: Verdicts remembered: a cluster's distinct pod templates, many times over.
_REMEMBERED = 512
#: Larger settings are checked each time, so the memory held stays under about 4 MiB.
_REMEMBERED_MAX_CHARS = 8192


@functools.lru_cache(maxsize=_REMEMBERED)
def _check(canonical: str) -> Settings | str:
    return _read(json.loads(canonical))


def _read(settings: dict[str, Any]) -> Settings | str:
    """The settings, or the agent's error message."""
    server = {**settings.get("server", {}), "allow_unauthenticated": True}
    server.pop("token_file", None)
    pod = {k: v for k, v in settings.get("pod", {}).items() if k != "labels_file"}
    try:
        return from_mapping({**settings, "server": server, "pod": pod}, _DOWNWARD_API)
    except ConfigError as e:
        return str(e)


def render(value: Any) -> str:
    """`value` as one line of YAML (a JSON subset YAML 1.1 reads the same: floats keep a dot)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")  # repr signs the exponent, as YAML 1.1 wants
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"
    return json.dumps(value)
