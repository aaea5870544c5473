"""Prometheus metrics of the agent, in a registry of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.model.report import PhaseRecord, Release

_PREFIX = "shutdown_coordinator"


def _reader(source: Callable[[], dict[str, int]], key: str) -> Callable[[], float]:
    return lambda: float(source().get(key, 0))


class Metrics:
    """Implements the coordinator's ShutdownListener; /metrics renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.hooks = Counter(
            f"{_PREFIX}_hooks",
            "preStop hooks by container and result",
            ["container", "result"],
            registry=self.registry,
        )
        self.phase_seconds = Gauge(
            f"{_PREFIX}_phase_duration_seconds",
            "How long each phase of the shutdown took",
            ["phase", "outcome"],
            registry=self.registry,
        )
        self.phase_outcomes = Counter(
            f"{_PREFIX}_phase_outcomes",
            "Phases by outcome",
            ["phase", "outcome"],
            registry=self.registry,
        )
        self.released = Gauge(
            f"{_PREFIX}_container_released_seconds",
            "Seconds from the first hook to each release",
            ["container", "reason"],
            registry=self.registry,
        )
        self.budget_left = Gauge(
            f"{_PREFIX}_budget_remaining_seconds",
            "Seconds before the kubelet stops waiting",
            registry=self.registry,
        )
        self.connections = Gauge(
            f"{_PREFIX}_inbound_connections",
            "Inbound connections in the last sample",
            ["kind"],
            registry=self.registry,
        )
        self.finished = Gauge(
            f"{_PREFIX}_shutdown_finished",
            "1 once the shutdown has finished",
            registry=self.registry,
        )
        self._started_at: float | None = None

    def watch(
        self, budget_left: Callable[[], float], connections: Callable[[], dict[str, int]]
    ) -> None:
        """Read live figures at scrape time."""
        self.budget_left.set_function(budget_left)
        for kind in ("established", "in_flight", "idle", "close_wait"):
            self.connections.labels(kind).set_function(_reader(connections, kind))

    def phase_finished(self, record: PhaseRecord) -> None:
        """Record a phase."""
        if self._started_at is None:
            self._started_at = record.started_at
        self.phase_seconds.labels(record.phase, str(record.outcome)).set(record.duration)
        self.phase_outcomes.labels(record.phase, str(record.outcome)).inc()

    def container_released(self, release: Release) -> None:
        """Record a release."""
        start = self._started_at if self._started_at is not None else release.at
        self.released.labels(release.container, release.reason).set(release.at - start)

    def shutdown_finished(self, summary: dict[str, Any]) -> None:  # noqa: ARG002 - the protocol's shape
        """Record the end."""
        self.finished.set(1)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
