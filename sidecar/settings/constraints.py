"""What a field may hold beyond its type, and where the environment may set it: declared once."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


#: A number written with more characters than this is refused before Python converts it.
NUMBER_MAX_CHARS = 4000
#: Containers deeper than this are shown as `[...]`; only the first few items are shown.
_SHOWN_LEVELS = 2
_SHOWN_ITEMS = 4


def show(value: object) -> str:
    """A short repr of a bad value for an error message; never walks more than a few items."""
    return clip(_bounded_repr(value, _SHOWN_LEVELS))


def clip(text: str, limit: int = 60) -> str:
    """`text`, cut to `limit` characters with `...` when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_name(key: object) -> str:
    """A key of the file as an error names it: odd ones (spaces, newlines, numbers) quoted."""
    if isinstance(key, str) and key.isidentifier():
        return clip(key)
    return show(key)


def _bounded_repr(value: object, levels: int) -> str:
    """repr(value), but a huge integer by its length and only the first items of a container."""
    if isinstance(value, bool) or not isinstance(value, int | str | bytes | list | tuple | dict):
        return repr(value)  # None, floats, dates, sets of scalars, a Secret's own repr
    if isinstance(value, int):
        # 190 bits is under 60 digits; beyond that repr is cut anyway, or refused (4300 digits).
        return (
            repr(value) if value.bit_length() <= 190 else f"an integer of {_digits(value)} digits"
        )
    if isinstance(value, str | bytes):
        return repr(value[:61]) if type(value) in {str, bytes} else repr(value)
    opening, closing = ("{", "}") if isinstance(value, dict) else ("(", ")")
    opening, closing = ("[", "]") if isinstance(value, list) else (opening, closing)
    if levels == 0:
        return f"{opening}...{closing}" if value else opening + closing
    if isinstance(value, dict):
        items = [
            f"{_bounded_repr(k, levels - 1)}: {_bounded_repr(v, levels - 1)}"
            for k, v in list(value.items())[:_SHOWN_ITEMS]
        ]
    else:
        items = [_bounded_repr(v, levels - 1) for v in value[:_SHOWN_ITEMS]]
    more = ", ..." if len(value) > _SHOWN_ITEMS else ""
    single = "," if isinstance(value, tuple) and len(value) == 1 else ""
    return f"{opening}{', '.join(items)}{more}{single}{closing}"


def _digits(number: int) -> int:
    """How many decimal digits `number` has, without converting it to text."""
    magnitude = abs(number)
    digits = math.floor(math.log10(magnitude)) + 1
    if 10**digits <= magnitude:
        digits += 1
    elif 10 ** (digits - 1) > magnitude:
        digits -= 1
    return digits


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


def _unfit_for_a_header(token: str) -> str:
    """The first character of `token` no HTTP header value can carry, by kind and position only."""
    for position, char in enumerate(token, start=1):
        if not "!" <= char <= "~":
            kinds = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a line break"}
            other = "a non-ASCII character" if char > "\x7f" else "a control character"
            kind = kinds.get(char, other)
            return f"{kind} at character {position}"
    return "nothing unfit"


#: Whitespace around a token is how a file or a Secret's value ends, never part of the token.
TRIMMED = Rule("", lambda _: True, normalize=lambda v: type(v)(v.strip()))
#: Visible ASCII only: a header value cannot hold a line break, and the kubelet sends the token
#: as written while an HTTP server strips the spaces around it and decodes the rest as it likes.
HEADER_VALUE = Rule(
    "visible ASCII characters only (an HTTP header value)",
    lambda v: all("!" <= c <= "~" for c in v),
    shown=_unfit_for_a_header,
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
