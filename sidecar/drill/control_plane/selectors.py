"""Label and field selectors as the API server parses them (kubernetes-behaviour E9, E11)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.drill.control_plane.store import Object


#: Fields each resource can be selected on (E11); every resource has the metadata pair.
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ),
}
_METADATA_FIELDS = ("metadata.name", "metadata.namespace")

_SET_TERM = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


class SelectorError(ValueError):
    """A selector the API server would refuse with 400."""


def _terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    op: str  # = != in notin exists !exists
    values: frozenset[str] = frozenset()

    def holds(self, labels: dict[str, str]) -> bool:
        """Whether these labels satisfy the term."""
        value = labels.get(self.key)
        return {
            "=": value in self.values,
            "!=": value not in self.values,
            "in": value in self.values,
            "notin": value not in self.values,
            "exists": self.key in labels,
            "!exists": self.key not in labels,
        }[self.op]


def parse_labels(text: str | None) -> list[Requirement]:
    """The terms of a label selector; SelectorError for what the server rejects."""
    requirements = []
    for term in _terms(text or ""):
        eq = _EQ_TERM.match(term)
        if eq:
            key, op, value = eq.groups()
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", frozenset({value})))
            continue
        found = _SET_TERM.match(term)
        if not found or (found.group(1) and found.group(3)):
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
        negated, key, op, values = found.groups()
        if op:
            allowed = frozenset(v.strip() for v in values.split(",") if v.strip())
            requirements.append(Requirement(key, op, allowed))
        else:
            requirements.append(Requirement(key, "!exists" if negated else "exists"))
    return requirements


def label_matcher(text: str | None) -> Callable[[Object], bool]:
    """A predicate over an object's labels."""
    requirements = parse_labels(text)

    def matches(obj: Object) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.holds(labels) for r in requirements)

    return matches


def field_matcher(resource: str, text: str | None) -> Callable[[Object], bool]:
    """A predicate over selectable fields; an unknown field is refused as the server does."""
    allowed = FIELDS.get(resource, _METADATA_FIELDS)
    checks: list[tuple[str, str, bool]] = []
    for term in _terms(text or ""):
        eq = _EQ_TERM.match(term)
        if not eq:
            raise SelectorError(f"invalid selector: {term.strip()!r}; can't understand it")
        field_name, op, value = eq.groups()
        if field_name not in allowed:
            only = ", ".join(f'"{f}"' for f in allowed)
            raise SelectorError(f'"{field_name}" is not a known field selector: only {only}')
        checks.append((field_name, value, op == "!="))

    def matches(obj: Object) -> bool:
        return all((_field(obj, f) != v) if neg else (_field(obj, f) == v) for f, v, neg in checks)

    return matches


def _field(obj: Object, path: str) -> str:
    if path == "status.podIPs":
        return ",".join(ip.get("ip", "") for ip in obj.get("status", {}).get("podIPs") or [])
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def both(
    first: Callable[[Object], bool], second: Callable[[Object], bool]
) -> Callable[[Object], bool]:
    """A predicate true when both are."""
    return lambda obj: first(obj) and second(obj)
