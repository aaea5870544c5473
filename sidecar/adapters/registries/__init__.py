"""Registry back ends: each implements sidecar.shutdown.registries.Registry with its own client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.adapters.registries.http import HttpRegistry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sidecar.adapters.http_action import HttpClient
    from sidecar.model.http_action import Identity
    from sidecar.settings.registries import HttpRegistrySettings


def build_registries(
    settings: Sequence[HttpRegistrySettings], pod: Identity, client: HttpClient
) -> list[HttpRegistry]:
    """One back end per configured registry, by its `kind` (raises ConfigError naming the key)."""
    return [HttpRegistry(s, pod, client, key=f"registries[{i}]") for i, s in enumerate(settings)]
