"""The few errors the coordinator raises; outcomes of the outside world are not errors."""

from __future__ import annotations

#: How much of a remote body an error message may quote, so a large answer cannot flood the logs.
REMOTE_TEXT_MAX_CHARS = 256


def truncate(text: str, limit: int = REMOTE_TEXT_MAX_CHARS) -> str:
    """Shorten a remote body for an error message, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class SidecarError(Exception):
    """Base of every error raised on purpose by this package."""


class ConfigError(SidecarError):
    """Settings are invalid: the message names the key, the value and what was expected."""


class AdapterError(SidecarError):
    """A call to the outside world (Envoy, a registry, the kernel) failed."""


class MalformedAnswerError(SidecarError, ValueError):
    """A remote answer (an API object, a watch event) lacks a field or has the wrong type."""


class ApiError(AdapterError):
    """A Kubernetes API call failed: `status` is the HTTP code, None when nothing answered."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(f"{what}: {message}")
        self.status = status

    @property
    def forbidden(self) -> bool:
        """RBAC or authentication said no: retrying cannot help."""
        return self.status in {401, 403}


class AgentStopError(SidecarError):
    """Stopping the agent failed at one or more stages; every failure is named."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("stopping the agent failed: " + "; ".join(failures))
        self.failures = failures
