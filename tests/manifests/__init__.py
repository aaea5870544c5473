"""Reading manifests/: a small Kustomize renderer for the features the manifests use, and lookups.

`kubectl kustomize` is the reference; where kubectl is installed, test_kustomize.py checks that
this renderer gives the same objects for every kustomization. The subset, as kustomize does it:
`resources` (files of YAML documents, or folders with their own kustomization), `components`
(kind Component: their resources are added, then their patches run over everything so far),
`patches` with a `target` and a JSON patch file (RFC 6902: add, remove, replace), and
`namespace` (set on every namespaced object, and on ServiceAccount subjects of bindings that name
none). Any other kustomization key is refused, so a manifest never relies on something the tests
do not render.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
#: Every folder a user renders or applies.
KUSTOMIZATIONS = (
    "agent",
    "base",
    "overlays/default",
    "overlays/guarantee",
    "overlays/cert-manager",
    "examples/app",
    "examples/istio",
)
#: Kinds that live outside namespaces (those the manifests use, and a few neighbours).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "CustomResourceDefinition",
        "PriorityClass",
    }
)
_KEYS = frozenset({"apiVersion", "kind", "namespace", "resources", "components", "patches"})
_TARGET_KEYS = frozenset({"group", "version", "kind", "name"})

Obj = dict[str, Any]


def kustomization(folder: Path) -> Obj:
    """The folder's kustomization.yaml, refused if it uses a key this renderer does not know."""
    data = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{folder}/kustomization.yaml: expected a mapping, got {data!r}")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml: keys not rendered here: {sorted(unknown)}")
    return data


def documents(path: Path) -> list[Any]:
    """Every YAML document of a file, empty ones left out."""
    text = path.read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def render(folder: Path) -> list[Obj]:
    """The objects `kubectl kustomize folder` prints, in the order they were met."""
    data = kustomization(folder)
    if data.get("kind", "Kustomization") != "Kustomization":
        raise ValueError(f"{folder}: a {data['kind']} cannot be rendered on its own")
    objects = _resources(folder, data)
    for entry in data.get("components", []):
        _component(folder / entry, objects)
    _patch(folder, data, objects)
    if "namespace" in data:
        set_namespace(objects, data["namespace"])
    _check_unique(folder, objects)
    return objects


def _resources(folder: Path, data: Obj) -> list[Obj]:
    objects: list[Obj] = []
    for entry in data.get("resources", []):
        path = folder / entry
        objects.extend(render(path) if path.is_dir() else documents(path))
    return objects


def _component(folder: Path, objects: list[Obj]) -> None:
    data = kustomization(folder)
    if data.get("kind") != "Component":
        raise ValueError(f"{folder}: listed under components but its kind is {data.get('kind')!r}")
    objects.extend(_resources(folder, data))
    for entry in data.get("components", []):
        _component(folder / entry, objects)
    _patch(folder, data, objects)


def _patch(folder: Path, data: Obj, objects: list[Obj]) -> None:
    for entry in data.get("patches", []):
        target = entry["target"]
        if set(target) - _TARGET_KEYS:
            raise ValueError(f"{folder}: target keys not rendered here: {sorted(target)}")
        operations = documents(folder / entry["path"])[0]
        for obj in objects:
            if matches(obj, target):
                for operation in operations:
                    apply_operation(obj, operation)


def matches(obj: Mapping[str, Any], target: Mapping[str, str]) -> bool:
    """Whether a patch's target selects the object."""
    api_version: str = obj["apiVersion"]
    kind: str = obj["kind"]
    name: str = obj["metadata"]["name"]
    group, _, version = api_version.rpartition("/")
    return (
        target.get("group", group) == group
        and target.get("version", version) == version
        and target.get("kind", kind) == kind
        and target.get("name", name) == name
    )


def apply_operation(obj: Obj, operation: Mapping[str, Any]) -> None:
    """One RFC 6902 operation (add, remove, replace), in place."""
    *parents, last = [
        p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]
    ]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    # Each object gets its own copy: one patch file runs over every object it targets.
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, value)
        elif op == "remove":
            del node[index]
        elif op == "replace":
            node[index] = value
        else:
            raise ValueError(f"JSON patch op {op!r} is not rendered here")
    elif op in {"add", "replace"}:
        if op == "replace" and last not in node:
            raise KeyError(f"replace: {operation['path']} does not exist")
        node[last] = value
    elif op == "remove":
        del node[last]
    else:
        raise ValueError(f"JSON patch op {op!r} is not rendered here")


def set_namespace(objects: list[Obj], namespace: str) -> None:
    """Kustomize's `namespace:` for the objects the manifests hold."""
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] in {"RoleBinding", "ClusterRoleBinding"}:
            for subject in obj.get("subjects", []):
                if subject["kind"] == "ServiceAccount" and not subject.get("namespace"):
                    subject["namespace"] = namespace


def _check_unique(folder: Path, objects: list[Obj]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise ValueError(f"{folder}: {key} is defined twice")
        seen.add(key)


def identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """kind, namespace and name: what makes an object one in the cluster."""
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def rendered(name: str) -> list[Obj]:
    """A kustomization under manifests/ by its folder, e.g. `overlays/default`."""
    return render(MANIFESTS / name)


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    """The single object of that kind (and name), or an error that says what there was."""
    found = [o for o in objects if o["kind"] == kind and name in {None, o["metadata"]["name"]}]
    if len(found) != 1:
        have = sorted(identity(o) for o in objects)
        raise LookupError(f"expected one {kind} {name or ''}, found {len(found)} in {have}")
    return found[0]


def selected(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key: str = expression["key"]
        operator: str = expression["operator"]
        values: list[str] = expression.get("values", [])
        ok: bool = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def walk_kustomizations() -> Iterator[Path]:
    """Every folder under manifests/ holding a kustomization.yaml."""
    for path in sorted(MANIFESTS.rglob("kustomization.yaml")):
        yield path.parent
