"""How the API stand-in reads requests and answers: kinds, Status errors, query parameters."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from sidecar.drill.control_plane.store import Object

#: resource -> (apiVersion, kind) as served.
KINDS = {
    "pods": ("v1", "Pod"),
    "services": ("v1", "Service"),
    "events": ("v1", "Event"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
}


def status(code: int, reason: str, message: str) -> web.Response:
    """An API error as the server sends it: a Status object."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def invalid(field_name: str, message: str) -> web.Response:
    """A 422 Invalid about one field of the request's options."""
    return status(422, "Invalid", f"{field_name}: {message}")


class Refused(Exception):  # noqa: N818 - the request is refused with this answer
    """Raised while checking a request: answer with `response` instead."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def true_param(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (clients send "True")."""
    return value in {"1", "t", "T", "true", "TRUE", "True"}


def number_param(query: Any, name: str, default: float) -> float:
    """A numeric query parameter; Refused with 400 when it is not a number."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise Refused(
            status(400, "BadRequest", f"{name}: expected a number, got {text!r:.20}")
        ) from None
    return value


async def json_body(request: web.Request) -> Object | None:
    """The request's body if it is a JSON object; None when absent or anything else."""
    if not request.can_read_body:
        return None
    with contextlib.suppress(ValueError):
        body = json.loads(await request.read())
        return body if isinstance(body, dict) else None
    return None
