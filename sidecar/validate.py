"""Reads parsed YAML mappings key by key; errors name the full key, value and expectation."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from sidecar.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

MISSING: Any = object()


class Section:
    """Reads one mapping of the settings file, naming the full key in every error."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'settings'}: expected a mapping, got {show(data)}")
        self._data: dict[str, Any] = data
        self._path = path
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        """The full dotted key of `name` in this mapping."""
        return f"{self._path}.{name}" if self._path else name

    def raw(self, name: str, default: Any = MISSING) -> Any:
        """The value of `name`, or `default`; required when no default is given."""
        self._read.add(name)
        value = self._data.get(name, MISSING)
        if value is MISSING or value is None:
            if default is MISSING:
                raise ConfigError(f"{self.key(name)}: required, but not set")
            return default
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        """A finite number, at least `minimum`."""
        value = self.raw(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{self.key(name)}: expected a number of seconds, got {show(value)}")
        if value < minimum:
            raise ConfigError(f"{self.key(name)}: expected at least {minimum}, got {value}")
        return float(value)

    def port(self, name: str, default: int) -> int:
        """A TCP port."""
        return port(self.raw(name, default), self.key(name))

    def boolean(self, name: str, default: bool) -> bool:
        """True or false."""
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {show(value)}")
        return value

    def text(self, name: str, default: str | None) -> str | None:
        """A string, or None."""
        value = self.raw(name, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.key(name)}: expected a string, got {show(value)}")
        return value

    def choice(self, name: str, default: str, options: Sequence[str]) -> str:
        """One of `options`."""
        value = self.raw(name, default)
        if value not in options:
            raise ConfigError(
                f"{self.key(name)}: expected one of {', '.join(options)}, got {show(value)}"
            )
        return str(value)

    def items(self, name: str) -> list[Any]:
        """A list (empty when absent)."""
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.key(name)}: expected a list, got {show(value)}")
        return value

    def section(self, name: str) -> Section:
        """A nested mapping (empty when absent)."""
        return Section(self.raw(name, {}), self.key(name))

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must never pass silently."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise ConfigError(f"{self.key(unknown[0])}: unknown key (known here: {known})")


def show(value: object) -> str:
    """A short repr of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def port(value: object, key: str) -> int:
    """A TCP port from 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{key}: expected a TCP port from 1 to 65535, got {show(value)}")
    return value


def url(value: str | None, key: str) -> str | None:
    """An http(s) URL without a trailing slash, or None."""
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {show(value)}")
    return value.rstrip("/") if value else value
