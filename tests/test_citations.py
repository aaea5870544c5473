"""The project cites only documents it contains, and every behaviour point it cites exists.

Pins three things over sidecar/, tests/, bench/, docs/, manifests/, README.md and pyproject.toml:

- nothing refers to the documents that live outside the repository (the design notes, the
  reference notes and their section numbers, the measurement notes);
- every point id cited in text resolves to a definition in docs/kubernetes-behaviour.md
  (`A1` ... `I4`, sub-points such as `B4a` or `D13a`) or docs/envoy-behaviour.md (`EV1` ...);
- every definition names at least one public source (a URL).

A citation is a bare id: an upper-case letter A-I, one or two digits and an optional lower-case
letter (`A3`, `B17`, `D13a`), or `EV` and digits for Envoy and Istio facts. Forms built on an id
resolve to that id: a step `D6.3` to `D6`, a lettered step `B4(c)` to `B4`, both ends of a range
`E1-E11`. Ids inside URLs are not citations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sidecar", "tests", "bench", "docs", "manifests", "README.md", "pyproject.toml")
TEXT_SUFFIXES = frozenset({".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".json", ".cfg", ".ini"})
DEFINING_DOCS = (ROOT / "docs" / "kubernetes-behaviour.md", ROOT / "docs" / "envoy-behaviour.md")
THIS_FILE = Path(__file__).resolve()

#: Paths and names of the documents kept outside the repository, and their section signs.
OUTSIDE = re.compile(
    r"design\.md|\breference/|\breference\s*§|§|measurements\.md|registries-and-envoy"
    r"|envoy-minimal|anchors\.md|/work/shared"
)
URL = re.compile(r"https?://[^\s<>()`'\"]+")
#: A cited point id (see the module docstring); letters or digits around it make it something else.
POINT = re.compile(r"(?<![\w.])(EV\d{1,2}|[A-I]\d{1,2}[a-z]?)(?!\w)")
#: A definition: `**A3.**` anywhere in a defining document.
DEFINITION = re.compile(r"\*\*(EV\d{1,2}|[A-I]\d{1,2}[a-z]?)\.\*\*")
#: The start of an entry: a definition at the start of a line.
ENTRY_START = re.compile(r"^\*\*(EV\d{1,2}|[A-I]\d{1,2}[a-z]?)\.\*\*")


@dataclass(frozen=True)
class Line:
    """One line of a scanned file, with URLs blanked out."""

    path: Path
    number: int
    text: str

    def where(self) -> str:
        """`path:line`, relative to the repository."""
        return f"{self.path.relative_to(ROOT)}:{self.number}"


def scanned_files() -> list[Path]:
    """Every text file under the scanned roots, in a stable order."""
    files: list[Path] = []
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            files.append(top)
        elif top.is_dir():
            files.extend(
                p
                for p in top.rglob("*")
                if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts
            )
    return sorted(files)


def lines_of(path: Path) -> list[Line]:
    """The file's lines, numbered from 1, with every URL replaced by a space."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [
        Line(path, number, URL.sub(" ", raw)) for number, raw in enumerate(text.splitlines(), 1)
    ]


def defined_points() -> dict[str, list[str]]:
    """Each defined id and where it is defined (more than one place is an error)."""
    found: dict[str, list[str]] = {}
    for doc in DEFINING_DOCS:
        for line in lines_of(doc):
            for point in DEFINITION.findall(line.text):
                found.setdefault(point, []).append(line.where())
    return found


def entries(doc: Path) -> dict[str, str]:
    """Each entry of a defining document: its text up to the next entry or heading."""
    result: dict[str, str] = {}
    current: str | None = None
    for raw in doc.read_text(encoding="utf-8").splitlines():
        start = ENTRY_START.match(raw)
        if start or raw.startswith("#"):
            current = start.group(1) if start else None
            if current is not None:
                result[current] = ""
        if current is not None:
            result[current] += raw + "\n"
    return result


def test_the_defining_documents_exist() -> None:
    missing = [str(doc.relative_to(ROOT)) for doc in DEFINING_DOCS if not doc.is_file()]
    assert not missing, f"missing: {missing}"


def test_nothing_cites_documents_outside_the_repository() -> None:
    offenders = [
        f"{line.where()}: {match.group(0)!r} in: {line.text.strip()}"
        for path in scanned_files()
        if path.resolve() != THIS_FILE
        for line in lines_of(path)
        for match in OUTSIDE.finditer(line.text)
    ]
    assert not offenders, (
        f"{len(offenders)} citation(s) of documents outside the repository; cite the point "
        "ids of docs/kubernetes-behaviour.md or docs/envoy-behaviour.md, or a doc in docs/:\n"
        + "\n".join(offenders)
    )


def test_every_cited_point_is_defined() -> None:
    defined = defined_points()
    offenders = [
        f"{line.where()}: {point} in: {line.text.strip()}"
        for path in scanned_files()
        for line in lines_of(path)
        for point in POINT.findall(line.text)
        if point not in defined
    ]
    assert not offenders, (
        f"{len(offenders)} cited point id(s) defined in neither docs/kubernetes-behaviour.md "
        "nor docs/envoy-behaviour.md:\n" + "\n".join(offenders)
    )


def test_every_point_is_defined_once() -> None:
    twice = {point: places for point, places in defined_points().items() if len(places) > 1}
    assert not twice, f"defined more than once: {twice}"


def test_every_entry_names_a_public_source() -> None:
    offenders = [
        f"{doc.relative_to(ROOT)}: {point}"
        for doc in DEFINING_DOCS
        for point, text in entries(doc).items()
        if not URL.search(text)
    ]
    assert not offenders, "entries without a public source (a URL):\n" + "\n".join(offenders)


def test_the_citation_pattern_reads_the_accepted_forms() -> None:
    text = "A3, B4(c), D6.3 and D13a; E1-E11; EV2. Not: 0x1F90, C901, E2E, sha256, v1.B2."
    assert POINT.findall(text) == ["A3", "B4", "D6", "D13a", "E1", "E11", "EV2"]
