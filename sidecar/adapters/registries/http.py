"""The generic HTTP registry: each step of announce and retire is one templated request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.errors import AdapterError, ConfigError, truncate
from sidecar.model.http_action import render_action, render_optional, render_verify
from sidecar.model.registry import Answer

if TYPE_CHECKING:
    from sidecar.adapters.http_action import HttpClient
    from sidecar.model.http_action import Identity
    from sidecar.model.registry import Presence
    from sidecar.settings.registries import HttpRegistrySettings


class HttpRegistry:
    """A registry driven by settings: mark_down and force_remove are optional.

    Templates are rendered once, here, over the pod's identity: a bad placeholder, a missing
    label or an empty value is a ConfigError at start, never a surprise during a shutdown.
    """

    def __init__(
        self,
        settings: HttpRegistrySettings,
        pod: Identity,
        client: HttpClient,
        *,
        key: str = "registries[0]",
    ) -> None:
        self._name = settings.name
        self._client = client
        for step in ("mark_down", "deregister", "force_remove"):
            if getattr(settings, step).verify.url:
                raise ConfigError(
                    f"{key}.{step}.verify: not used in a registry; its own verify is the read-back"
                )
        self._mark_down = render_optional(settings.mark_down, pod, f"{key}.mark_down")
        self._deregister = render_action(settings.deregister, pod, f"{key}.deregister")
        self._gone = frozenset(settings.gone_statuses)
        self._verify = render_verify(settings.verify, pod, f"{key}.verify")
        self._force = render_optional(settings.force_remove, pod, f"{key}.force_remove")

    @property
    def name(self) -> str:
        """How the report names this registry."""
        return self._name

    @property
    def can_mark_down(self) -> bool:
        """Whether a mark_down action is configured."""
        return self._mark_down is not None

    @property
    def can_force(self) -> bool:
        """Whether a force_remove action is configured."""
        return self._force is not None

    async def mark_down(self, deadline: float) -> None:
        """Send the mark_down action."""
        if self._mark_down is None:
            raise AdapterError(f"{self._name}: no mark_down action configured")
        await self._client.run(self._mark_down, deadline)

    async def deregister(self, deadline: float) -> Answer:
        """Send the deregister action: OK on an expected status, GONE on a gone status."""
        request = self._deregister.request
        status, body = await self._client.send(request, deadline)
        if status in self._gone:
            return Answer.GONE
        if status in self._deregister.expect_statuses:
            return Answer.OK
        raise AdapterError(
            f"{self._name}: deregister {request.method} {request.url}: HTTP {status}: "
            f"{truncate(body.strip())}"
        )

    async def is_present(self, deadline: float) -> Presence:
        """Send the verify request and read its answer."""
        return await self._client.read(self._verify, deadline)

    async def force_remove(self, deadline: float) -> None:
        """Send the force_remove action."""
        if self._force is None:
            raise AdapterError(f"{self._name}: no force_remove action configured")
        await self._client.run(self._force, deadline)
