"""The settings file as text and YAML: bounded size, depth and numbers; no alias, no key twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sidecar.errors import ConfigError
from sidecar.settings.constraints import NUMBER_MAX_CHARS, clip, key_name

#: The schema nests six levels deep; 32 leaves room and keeps every walk far from Python's
#: recursion limit (the composer and the reader recurse once per level).
DEPTH_MAX = 32
_INT_TAG = "tag:yaml.org,2002:int"


class _RefusedError(Exception):
    """One node of the document refused: where it is and what was expected."""

    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


def read_text(path: str, max_bytes: int, why: str = "") -> str:
    """The UTF-8 text of the file at `path`, read no further than `max_bytes`.

    Raises ValueError saying what was wrong; the caller names the file (or the key that gave it).
    """
    try:
        with Path(path).open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as e:
        raise ValueError(f"cannot read it: {e.strerror}") from None
    if len(data) > max_bytes:
        raise ValueError(f"expected at most {max_bytes} bytes{why}, got more")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise ValueError(
            f"expected UTF-8 text, got byte 0x{data[e.start]:02x} at line {line}, column {column}"
        ) from None


def parse(text: str, source: str) -> object:
    """The YAML document in `text`; a one-line ConfigError naming `source` when it is refused."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # it checks every character at once
        return loader.get_single_data()
    except _RefusedError as e:
        where = f"{e.path}: " if e.path else ""
        raise ConfigError(f"{source}: line {e.line}: {where}{e.message}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(f"{e.problem or ''} ({e.context})".split()) if e.context else e.problem
        raise ConfigError(f"{source}: not valid YAML{at}: {clip(str(problem), 160)}") from None
    except yaml.YAMLError as e:
        problem = " ".join(str(e).split())
        raise ConfigError(f"{source}: not valid YAML: {clip(problem, 160)}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing anchors, aliases, keys given twice, deep nesting, huge numbers."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        #: The dotted key of each collection being composed, outermost first.
        self._paths: list[str] = []
        #: The key each composed node sits at, for errors found while constructing it.
        self._at: dict[int, str] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        path = self._path_of(parent, index)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _RefusedError(line, path, _NO_ALIAS + f"*{clip(str(event.anchor), 40)}")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _RefusedError(line, path, _NO_ALIAS + f"&{clip(str(anchor), 40)}")
        collection = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if collection:
            if len(self._paths) >= DEPTH_MAX:
                raise _RefusedError(line, path, f"expected at most {DEPTH_MAX} levels of nesting")
            self._paths.append(path)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._paths.pop()
        self._at[id(node)] = path
        if (
            isinstance(node, ScalarNode)
            and node.tag == _INT_TAG
            and len(node.value) > NUMBER_MAX_CHARS
        ):
            message = f"expected a number of at most {NUMBER_MAX_CHARS} characters"
            raise _RefusedError(line, path, f"{message}, got {len(node.value)}")
        if isinstance(node, MappingNode):
            _refuse_twice(node, path)
        return node

    def _path_of(self, parent: Node | None, index: Any) -> str:
        """The key of the node composed next, as errors name it (`phases.quiet_window_seconds`)."""
        outer = self._paths[-1] if self._paths else ""
        if isinstance(parent, SequenceNode) and isinstance(index, int):
            return clip(f"{outer}[{index}]", 200)
        if isinstance(parent, MappingNode) and isinstance(index, ScalarNode):
            name = key_name(index.value)
            return clip(f"{outer}.{name}" if outer else name, 200)
        return outer

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as e:  # e.g. `2001-13-45`, `!!int x`
            what = clip(str(node.tag).rsplit(":", 1)[-1], 20)
            value = clip(repr(node.value) if isinstance(node, ScalarNode) else "...", 60)
            line = node.start_mark.line + 1
            at = self._at.get(id(node), "")
            raise _RefusedError(line, at, f"expected a valid {what}, got {value}") from e


_NO_ALIAS = "expected no YAML anchors or aliases (write each value out), got "


def _refuse_twice(node: MappingNode, path: str) -> None:
    """The first key given twice in this mapping, named with both lines."""
    seen_keys: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode):
            continue
        line = key.start_mark.line + 1
        if (key.tag, key.value) in seen_keys:
            name = key_name(key.value)
            where = clip(f"{path}.{name}" if path else name, 200)
            raise _RefusedError(
                line, where, f"given twice (first on line {seen_keys[(key.tag, key.value)]})"
            )
        seen_keys[(key.tag, key.value)] = line
