"""manifests/ holds together as Kustomize sees it, and the tests' renderer agrees with kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import (
    KUSTOMIZATIONS,
    MANIFESTS,
    apply_operation,
    documents,
    identity,
    kustomization,
    render,
    walk_kustomizations,
)

KUBECTL = shutil.which("kubectl")


def test_every_kustomization_folder_is_one_the_tests_render() -> None:
    found = {str(folder.relative_to(MANIFESTS)) for folder in walk_kustomizations()}
    components = {f for f in found if f.startswith("components/")}
    assert found - components == set(KUSTOMIZATIONS)
    assert components == {"components/guarantee", "components/cert-manager"}


@pytest.mark.parametrize("folder", sorted(walk_kustomizations()), ids=str)
def test_every_listed_file_exists_and_parses(folder: Path) -> None:
    data = kustomization(folder)
    entries = [*data.get("resources", []), *data.get("components", [])]
    entries += [patch["path"] for patch in data.get("patches", [])]
    assert entries, f"{folder}: lists nothing"
    for entry in entries:
        path = folder / entry
        assert path.exists(), f"{folder}/kustomization.yaml lists {entry!r}, which is missing"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{path}: no kustomization.yaml"
        else:
            assert documents(path), f"{path}: no YAML document"


def test_every_yaml_file_is_listed_by_a_kustomization() -> None:
    listed: set[Path] = set()
    for folder in walk_kustomizations():
        listed.add(folder / "kustomization.yaml")
        data = kustomization(folder)
        listed.update(folder / e for e in data.get("resources", []))
        listed.update(folder / p["path"] for p in data.get("patches", []))
    files = {p for p in MANIFESTS.rglob("*") if p.suffix in {".yaml", ".yml"}}
    orphans = sorted(str(p.relative_to(MANIFESTS)) for p in files - {p.resolve() for p in listed})
    assert orphans == []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renders_the_same_objects_as_kubectl_kustomize(name: str) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the renderer's own tests below still run")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(MANIFESTS / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[:2000]
    theirs = sorted(yaml.safe_load_all(done.stdout), key=identity)
    ours = sorted(render(MANIFESTS / name), key=identity)
    assert [identity(o) for o in ours] == [identity(o) for o in theirs]
    assert ours == theirs


def _write(folder: Path, name: str, data: Any, *, many: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    dump = yaml.safe_dump_all(data) if many else yaml.safe_dump(data)
    (folder / name).write_text(dump, encoding="utf-8")


def test_renderer_applies_components_patches_and_namespace(tmp_path: Path) -> None:
    base = tmp_path / "base"
    _write(base, "kustomization.yaml", {"resources": ["objects.yaml"]})
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "b"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
    }
    _write(
        base, "objects.yaml", [config_map, {**role, "metadata": {"name": "r"}}, binding], many=True
    )
    component = tmp_path / "component"
    _write(component, "kustomization.yaml", {
        "kind": "Component",
        "resources": ["more.yaml"],
        "patches": [{"path": "p.yaml", "target": {"kind": "ConfigMap"}}],
    })  # fmt: skip
    _write(component, "more.yaml", {**config_map, "metadata": {"name": "d"}})
    _write(component, "p.yaml", [{"op": "add", "path": "/data", "value": {"a/b": "1"}}])
    overlay = tmp_path / "overlay"
    _write(overlay, "kustomization.yaml", {
        "namespace": "ns",
        "resources": ["../base"],
        "components": ["../component"],
        "patches": [{"path": "q.yaml", "target": {"kind": "ConfigMap", "name": "c"}}],
    })  # fmt: skip
    _write(overlay, "q.yaml", [{"op": "remove", "path": "/data/a~1b"}])

    objects = {o["metadata"]["name"]: o for o in render(overlay)}

    assert objects["c"] == {**config_map, "metadata": {"name": "c", "namespace": "ns"}, "data": {}}
    assert objects["d"]["data"] == {"a/b": "1"}
    assert objects["d"]["metadata"]["namespace"] == "ns"
    assert "namespace" not in objects["r"]["metadata"]
    assert objects["b"]["subjects"] == [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]


def test_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", {"resources": [], "images": [{"name": "x"}]})
    with pytest.raises(ValueError, match="images"):
        render(tmp_path)
    component = tmp_path / "c"
    _write(component, "kustomization.yaml", {"kind": "Component"})
    with pytest.raises(ValueError, match="cannot be rendered on its own"):
        render(component)


def test_renderer_refuses_an_object_defined_twice(tmp_path: Path) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    _write(tmp_path, "kustomization.yaml", {"resources": ["a.yaml", "b.yaml"]})
    _write(tmp_path, "a.yaml", config_map)
    _write(tmp_path, "b.yaml", config_map)
    with pytest.raises(ValueError, match="defined twice"):
        render(tmp_path)


def test_json_patch_operations_on_lists() -> None:
    obj: dict[str, object] = {"a": [1, 2]}
    apply_operation(obj, {"op": "add", "path": "/a/-", "value": 3})
    apply_operation(obj, {"op": "add", "path": "/a/0", "value": 0})
    apply_operation(obj, {"op": "replace", "path": "/a/1", "value": 9})
    apply_operation(obj, {"op": "remove", "path": "/a/2"})
    assert obj == {"a": [0, 9, 3]}
    with pytest.raises(KeyError, match="does not exist"):
        apply_operation(obj, {"op": "replace", "path": "/b", "value": 1})
