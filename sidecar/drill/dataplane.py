"""The drill's data plane: the ingress Envoy's endpoints, rewritten after a propagation delay.

Real data planes (kube-proxy, ingress controllers, meshes) apply an EndpointSlice change some
time after the control plane made it (kubernetes-behaviour D13). Here the ingress reads
its endpoints from a file, and a change reaches that file `propagation_delay_seconds` after
the slice said so.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from sidecar.drill import envoy_config

if TYPE_CHECKING:
    from pathlib import Path


class EndpointsFile:
    """The ingress's EDS file; each write is a new version, moved into place atomically."""

    def __init__(self, path: Path, endpoints: list[tuple[str, int]]) -> None:
        self.path = path
        self.version = 0
        self.endpoints = list(endpoints)
        self._write()

    def _write(self) -> None:
        self.version += 1
        document = envoy_config.eds_response(self.version, self.endpoints)
        staging = self.path.with_name(f".{self.path.name}.{self.version}")
        staging.write_text(json.dumps(document), encoding="utf-8")
        # Envoy reloads a path source only when a file is moved onto it.
        staging.replace(self.path)

    def remove(self, endpoint: tuple[str, int]) -> None:
        """Stop routing to one endpoint now."""
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
            self._write()

    def remove_later(self, endpoint: tuple[str, int], delay_seconds: float) -> None:
        """Stop routing to it once the propagation delay has passed."""
        asyncio.get_running_loop().call_later(delay_seconds, self.remove, endpoint)
