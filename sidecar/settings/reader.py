"""The generic reader: types, defaults, choices and rules come from the dataclasses themselves."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import types
import typing
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

from sidecar.settings.constraints import NUMBER_MAX_CHARS, FromEnv, Rule, key_name, show
from sidecar.settings.schema import Secret

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A key the file does not set (YAML's null counts as unset, as an empty value would).
MISSING: Any = object()
#: A value that failed; its error is already recorded.
INVALID: Any = object()

_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_NAMES: dict[Any, str] = {float: "a number", int: "an integer", str: "a string", Secret: "a string"}


_HINTS: dict[type[Any], dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True)
class _Field:
    """What reading one field of a schema class needs, worked out once per class."""

    name: str
    hint: Any
    required: bool
    #: An absent group (a dataclass field) is read as {} so its environment variables count.
    group: bool
    env: FromEnv | None


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {}


def _fields_of(cls: type[Any]) -> tuple[_Field, ...]:
    """A schema class's fields as the reader walks them; computed once per class (a hot path)."""
    if cls not in _FIELDS:
        hints = hints_of(cls)
        _FIELDS[cls] = tuple(
            _Field(
                f.name,
                hints[f.name],
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                dataclasses.is_dataclass(_base(hints[f.name])),
                next(
                    (
                        m
                        for m in getattr(hints[f.name], "__metadata__", ())
                        if isinstance(m, FromEnv)
                    ),
                    None,
                ),
            )
            for f in dataclasses.fields(cls)
            if f.init
        )
    return _FIELDS[cls]


_ENV_NAMES: dict[type[Any], frozenset[str] | None] = {}


def _defaults_only(cls: type[Any], environ: Mapping[str, str]) -> bool:
    """Whether an absent group reads as its defaults: nothing required, no variable set.

    Most groups are absent from a settings file; skipping their walk halves a read's cost.
    """
    if cls not in _ENV_NAMES:
        _ENV_NAMES[cls] = _env_names(cls)
    names = _ENV_NAMES[cls]
    return names is not None and not any(environ.get(n) for n in names)


def _env_names(cls: type[Any]) -> frozenset[str] | None:
    """Every variable that can set a field of `cls` or its groups; None if a field is required."""
    names: set[str] = set()
    for f in _fields_of(cls):
        if f.required:
            return None
        if f.env is not None:
            names.update(f.env.names)
        if f.group:
            inner = _env_names(_base(f.hint))
            if inner is None:
                return None
            names |= inner
    return frozenset(names)


_METHODS: dict[Any, str] = {}
_BY_ORIGIN: dict[Any, str] = {
    typing.Annotated: "_annotated",
    Literal: "_literal",
    types.UnionType: "_union",
    Union: "_union",
    tuple: "_tuple",
    dict: "_dict",
}


def _method_for(hint: Any) -> str:
    """The Reader method that reads `hint`; worked out once per hint (a hot path)."""
    try:
        return _METHODS[hint]
    except KeyError:
        pass
    except TypeError:  # an unhashable hint (a rule with a list in it) is worked out each time
        return _method_of(hint)
    _METHODS[hint] = method = _method_of(hint)
    return method


def _method_of(hint: Any) -> str:
    # An Annotated alias passes attribute reads to its type, so it looks like a dataclass.
    if dataclasses.is_dataclass(hint) and get_origin(hint) is None:
        return "_dataclass"
    return _BY_ORIGIN.get(get_origin(hint), "_scalar")


_RULES: dict[Any, tuple[Any, tuple[Rule, ...]]] = {}


def _rules_of(hint: Any) -> tuple[Any, tuple[Rule, ...]]:
    """An `Annotated` hint's type and its rules, in order; worked out once per hint."""
    try:
        return _RULES[hint]
    except KeyError:
        found = _RULES[hint] = _split(hint)
        return found
    except TypeError:  # an unhashable hint is worked out each time
        return _split(hint)


def _split(hint: Any) -> tuple[Any, tuple[Rule, ...]]:
    return get_args(hint)[0], tuple(m for m in hint.__metadata__ if isinstance(m, Rule))


def hints_of(cls: type[Any]) -> dict[str, Any]:
    """A schema class's field types, `Annotated` kept; computed once per class (a hot path)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


def join(key: str, name: str) -> str:
    """The full dotted key of `name` inside `key`."""
    return f"{key}.{name}" if key else name


class Reader:
    """Reads parsed YAML into a dataclass, collecting every error as `key: message`."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.errors: dict[str, str] = {}
        #: Fields whose value failed, from the file or the environment.
        self.failed: set[str] = set()

    def error(self, key: str, message: str) -> Any:
        """Record one error (the first per key) and return INVALID."""
        self.errors.setdefault(key, f"{key}: {message}")
        return INVALID

    def expected(self, key: str, what: str, value: object) -> Any:
        """Record `key: expected <what>, got <value>`."""
        return self.error(key, f"expected {what}, got {show(value)}")

    def read(self, hint: Any, value: Any, key: str) -> Any:
        """`value` as `hint` says, or INVALID; `key` names it in errors."""
        return getattr(self, _method_for(hint))(hint, value, key)

    def _annotated(self, hint: Any, value: Any, key: str) -> Any:
        base, rules = _rules_of(hint)
        # A number with rules of its own states its own minimum, in its own words.
        own_minimum = base is float and bool(rules)
        result = self._number(value, key) if own_minimum else self.read(base, value, key)
        for rule in rules:
            if result is INVALID or result is None:
                break  # a failed value is reported once; an optional one may be absent
            if not rule.test(result):
                # A number is shown as it was written (-1, not -1.0), as every other bad value.
                shown = rule.shown(value if own_minimum else result)
                return self.error(key, f"expected {rule.expected}, got {shown}")
            result = rule.normalize(result)
        return result

    def _scalar(self, hint: Any, value: Any, key: str) -> Any:
        if hint is bool:
            return value if isinstance(value, bool) else self.expected(key, "true or false", value)
        if isinstance(value, bool):
            pass  # a YAML true is no number and no string
        elif hint is float:
            number = self._number(value, key)
            if number is not INVALID and number < 0:
                return self.expected(key, "at least 0.0", value)
            return number
        elif hint is int and isinstance(value, int):
            return value
        elif hint in {str, Secret} and isinstance(value, str):
            return hint(value)
        if hint not in _NAMES:
            raise TypeError(f"{key}: the schema's type {hint!r} is not one the reader knows")
        what = _NAMES[hint]
        if hint is float and key.lower().endswith("_seconds"):
            what = "a number of seconds"
        return self.expected(key, what, value)

    def _number(self, value: Any, key: str) -> Any:
        """A finite number of any sign, as a float."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer of hundreds of digits
                number = math.inf
            if math.isfinite(number):
                return number
        what = "a number of seconds" if key.lower().endswith("_seconds") else "a number"
        return self.expected(key, what, value)

    def _literal(self, hint: Any, value: Any, key: str) -> Any:
        choices = get_args(hint)
        if value in choices and not isinstance(value, bool):
            return value
        return self.expected(key, f"one of {', '.join(map(str, choices))}", value)

    def _union(self, hint: Any, value: Any, key: str) -> Any:
        options = tuple(o for o in get_args(hint) if o is not type(None))
        if value is None:
            return None
        if all(o in _NETWORKS for o in options):
            try:
                return ipaddress.ip_network(value if isinstance(value, str) else "", strict=False)
            except ValueError:
                return self.expected(key, "an IP address or CIDR", value)
        if all(dataclasses.is_dataclass(o) for o in options):
            return self._by_kind(options, value, key)
        if len(options) == 1:
            return self.read(options[0], value, key)
        raise TypeError(f"{key}: the schema's union {options} is not one the reader knows")

    def _by_kind(self, classes: tuple[Any, ...], value: Any, key: str) -> Any:
        kinds = {get_args(hints_of(c)["kind"])[0]: c for c in classes}
        if not isinstance(value, dict):
            return self.expected(key, "a mapping", value)
        kind = value.get("kind")
        if kind is None:
            return self.error(join(key, "kind"), f"required, one of {', '.join(kinds)}")
        if not isinstance(kind, str) or kind not in kinds:
            return self.expected(join(key, "kind"), f"one of {', '.join(kinds)}", kind)
        return self._dataclass(kinds[kind], value, key)

    def _tuple(self, hint: Any, value: Any, key: str) -> Any:
        if not isinstance(value, list):
            return self.expected(key, "a list", value)
        element = get_args(hint)[0]
        items = [self.read(element, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)

    def _dict(self, hint: Any, value: Any, key: str) -> Any:
        if get_args(hint)[1] is object:  # settings of another schema, checked by its reader
            if not isinstance(value, dict) or not _is_json(value):
                what = "a mapping of plain values (text, numbers, lists, mappings with text keys)"
                return self.expected(key, what, value)
            return dict(value)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return self.expected(key, "a mapping of strings to strings", value)
        return dict(value)

    def _dataclass(self, cls: type[Any], value: Any, key: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return self.expected(key or "settings", "a mapping", value)
        fields = _fields_of(cls)
        if not value and _defaults_only(cls, self.environ):
            return cls()
        names = [f.name for f in fields]
        for unknown in sorted(key_name(k) for k in value if k not in names):
            self.error(join(key, unknown), f"unknown key (known here: {', '.join(names)})")
        given: dict[str, Any] = {}
        complete = True
        for f in fields:
            result = self._field(f, value.get(f.name), join(key, f.name))
            if result is MISSING and f.required:
                result = self.error(join(key, f.name), "required, but not set")
            if result is INVALID:
                complete = (
                    complete and not f.required
                )  # an optional field falls back to its default
            elif result is not MISSING:
                given[f.name] = result
        return cls(**given) if complete else INVALID

    def _field(self, f: _Field, value: Any, key: str) -> Any:
        """A field's value from the file and its environment variables; MISSING when neither."""
        if value is None and f.group:
            value = {}  # an absent group still gets its environment variables
        from_file = MISSING if value is None else self.read(f.hint, value, key)
        if from_file is INVALID:
            self.failed.add(key)
        if f.env is None:
            return from_file
        name = next((n for n in f.env.names if self.environ.get(n)), None)
        if name is None:
            return from_file
        from_env = self.read(f.hint, parse_text(f.hint, self.environ[name]), name)
        if from_env is INVALID:
            self.failed.add(key)
        return from_file if f.env.fallback and from_file is not MISSING else from_env


#: Settings nest a few levels; deeper is no settings file (and would exhaust the stack).
_JSON_DEPTH_MAX = 32


def _is_json(value: object, depth: int = 0) -> bool:
    """Whether YAML gave only what JSON can hold: no dates, bytes, non-text keys, NaN."""
    if depth > _JSON_DEPTH_MAX:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def _base(hint: Any) -> Any:
    """The type under an `Annotated`."""
    return get_args(hint)[0] if get_origin(hint) is typing.Annotated else hint


def parse_text(hint: Any, text: str) -> Any:
    """A string (environment variable, annotation) as YAML would have given it; else the text."""
    base = _base(hint)
    if get_origin(base) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if base in {float, int} and len(text) <= NUMBER_MAX_CHARS:
        # As YAML reads it: -1 stays an integer (and is shown as written); nan and inf stay text.
        for number in (int, float):
            try:
                parsed = number(text)
            except ValueError:
                continue
            if isinstance(parsed, int) or math.isfinite(parsed):
                return parsed
    return text
