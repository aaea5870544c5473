"""The drill's API object type is defined once (tests/test_import_cycles.py covers cycles)."""

from __future__ import annotations

from pathlib import Path

DRILL = Path(__file__).resolve().parents[2] / "sidecar" / "drill"


def test_the_api_object_type_is_defined_once() -> None:
    definitions = [
        f"{p.relative_to(DRILL)}"
        for p in DRILL.rglob("*.py")
        if "\nObject = " in p.read_text(encoding="utf-8")
    ]
    assert definitions == ["control_plane/store.py"]
