"""The schema: the public names stay importable, and docs/configuration.md lists every key."""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import sidecar.settings
from sidecar.settings import Settings

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"
#: Keys whose file default is not the dataclass default: the loader resolves them.
RESOLVED_AT_LOAD = {"kubernetes.enabled": "`auto`", "release_order": "all apps together"}
#: Groups whose inner keys docs/registries.md lists, by their name inside the group.
REGISTRY_DOCS = Path(__file__).parents[2] / "docs" / "registries.md"
DOCUMENTED_IN_REGISTRIES = (
    "registries[].",
    "offline_calls[].",
    "config_cleanup[].",
    "prepare_action.",
)


def schema_keys(cls: type[Any], prefix: str = "") -> list[tuple[str, dataclasses.Field[Any]]]:
    """Every key of the file, dotted, with `[]` for a list of groups."""
    keys: list[tuple[str, dataclasses.Field[Any]]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(schema_keys(hint, f"{key}."))  # type: ignore[arg-type]
        elif get_origin(hint) is tuple and _groups(get_args(hint)[0]):
            keys.append((f"{key}[]", f))
            for group in _groups(get_args(hint)[0]):  # a union: each kind's keys
                keys.extend(schema_keys(group, f"{key}[]."))
        else:
            keys.append((key, f))
    return keys


def _groups(hint: Any) -> list[type[Any]]:
    """The dataclasses a list element may be: itself, or each member of a union of them."""
    members = get_args(hint) if get_origin(hint) in (types.UnionType, Union) else (hint,)
    return [m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)]


def documented_defaults() -> dict[str, str]:
    keys_section = DOCS.read_text().split("## Keys", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", keys_section, re.MULTILINE)
    return {key: default.strip() for key, default in rows}


def shown(value: object) -> str | None:
    """How docs/configuration.md writes a default; None where it says it in words."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{value:g}`"
    if isinstance(value, str) and value:
        return f"`{value}`"
    return None


def test_the_public_names_are_importable_from_the_package() -> None:
    for name in [
        "Settings", "ContainerSpec", "PodIdentity", "ServerSettings", "BudgetSettings",
        "PhaseSettings", "TrafficSettings", "EnvoySettings", "KubernetesSettings", "Secret",
        "TOKEN_HEADER", "TrafficSourceName", "load", "from_mapping",
    ]:  # fmt: skip
        assert hasattr(sidecar.settings, name), name
    assert sidecar.settings.TOKEN_HEADER == "X-Shutdown-Token"


def test_every_key_is_documented_with_its_default() -> None:
    documented = documented_defaults()
    text = DOCS.read_text()
    registry_text = "\n".join(
        path.read_text()
        for path in [REGISTRY_DOCS, *sorted(REGISTRY_DOCS.parent.glob("registries/*.md"))]
    )
    for key, f in schema_keys(Settings):
        if key.startswith(DOCUMENTED_IN_REGISTRIES):
            inner = key.rsplit(".", 1)[-1]
            assert f"`{inner}`" in registry_text, f"{key} is missing from docs/registries*.md"
            continue
        assert f"`{key}`" in text, f"{key} is missing from docs/configuration.md"
        if key in RESOLVED_AT_LOAD:
            assert documented[key] == RESOLVED_AT_LOAD[key], key
            continue
        expected = shown(f.default)
        if expected is not None:
            assert documented.get(key) == expected, key


def test_every_environment_variable_of_the_schema_is_documented() -> None:
    text = DOCS.read_text()
    hints: list[Any] = []
    for cls in (Settings, *(f.type for f in dataclasses.fields(Settings))):
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            hints.extend(get_type_hints(cls, include_extras=True).values())
    names = [
        name
        for hint in hints
        for meta in getattr(hint, "__metadata__", ())
        if isinstance(meta, sidecar.settings.constraints.FromEnv)
        for name in meta.names
    ]
    assert len(names) >= 9
    for name in names:
        assert f"`{name}`" in text, name


def test_documented_keys_all_exist() -> None:
    keys = {key for key, _ in schema_keys(Settings)}
    assert set(documented_defaults()) <= keys, set(documented_defaults()) - keys
