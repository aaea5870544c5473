"""What a field may hold beyond its type, and where the environment may set it: declared once."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def show(value: object) -> str:
    """A short repr of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Rule:
    """A check on a value already of the field's type; its error says `expected <expected>`."""

    expected: str
    test: Callable[[Any], bool]
    #: How the bad value is shown; a secret shows only its length.
    shown: Callable[[Any], str] = show
    #: Applied to a value that passed, e.g. a URL loses its trailing slash.
    normalize: Callable[[Any], Any] = _same


class FromEnv:
    """Environment variables (first non-empty wins) that set this field.

    By default they override the file (the downward API is the truth about the pod); with
    `fallback=True` they only fill a key the file leaves unset.
    """

    __slots__ = ("fallback", "names")

    def __init__(self, *names: str, fallback: bool = False) -> None:
        self.names = names
        self.fallback = fallback


def at_least(minimum: float) -> Rule:
    """A number not below `minimum`."""
    return Rule(f"at least {float(minimum)}", lambda v: v >= minimum)


def min_chars(count: int) -> Rule:
    """A secret of at least `count` characters; the error shows its length only."""
    return Rule(
        f"at least {count} characters", lambda v: len(v) >= count, shown=lambda v: str(len(v))
    )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_URL = re.compile(r"^https?://[^/\s]+")

PORT = Rule("a TCP port from 1 to 65535", lambda v: 1 <= v <= 65535)
#: Istio claims 15000-15099; a port there would be captured by the mesh.
OUTSIDE_ISTIO = Rule("a port outside Istio's 15000-15099", lambda v: not 15000 <= v <= 15099)
DNS_LABEL = Rule("a container name (DNS label)", lambda v: bool(_DNS_LABEL.match(v)))
IP_ADDRESS = Rule("an IP address", _is_ip)
URL = Rule(
    "an http:// or https:// URL", lambda v: bool(_URL.match(v)), normalize=lambda v: v.rstrip("/")
)
