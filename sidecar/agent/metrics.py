"""Prometheus metrics of the agent, in a registry of its own, derived from the flight's status."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sidecar.model.report import registry_entries

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

    from sidecar.model.flight import FlightStatus
    from sidecar.model.report import PhaseRecord, Release

_PREFIX = "shutdown_coordinator"
_CONNECTION_KINDS = ("established", "in_flight", "idle", "close_wait")


class _StatusCollector(Collector):
    """Reads hooks, budget and connections from one status snapshot at scrape time.

    The coordinator owns hook state; keeping copies in counters would be a second owner.
    """

    def __init__(self, status: Callable[[], FlightStatus], fallback_budget: float) -> None:
        self._status = status
        self._fallback_budget = fallback_budget

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        hooks = CounterMetricFamily(
            f"{_PREFIX}_hooks",
            "preStop hooks by container and result",
            labels=["container", "result"],
        )
        for container, count in sorted(status.hooks.received.items()):
            hooks.add_metric([container, "accepted"], count)
        for reason, count in sorted(status.hooks.rejected.items()):
            result = "rejected_token" if reason == "token" else reason
            hooks.add_metric(["", result], count)
        yield hooks
        yield GaugeMetricFamily(
            f"{_PREFIX}_budget_remaining_seconds",
            "Seconds before the kubelet stops waiting",
            value=self._budget_left(status),
        )
        connections = GaugeMetricFamily(
            f"{_PREFIX}_inbound_connections",
            "Inbound connections in the last sample",
            labels=["kind"],
        )
        for kind in _CONNECTION_KINDS:
            value = status.traffic.get(kind, 0)
            connections.add_metric([kind], float(value) if isinstance(value, int) else 0.0)
        yield connections

    def _budget_left(self, status: FlightStatus) -> float:
        if status.budget is None:
            return self._fallback_budget
        return status.budget.remaining(asyncio.get_running_loop().time())


class Metrics:
    """Implements the coordinator's ShutdownListener; /metrics renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.registry_outcomes = Counter(
            f"{_PREFIX}_registry_outcomes",
            "Each registry's and action's outcome, by phase (announce, retire)",
            ["phase", "registry", "outcome"],
            registry=self.registry,
        )
        self.finished = Gauge(
            f"{_PREFIX}_shutdown_finished",
            "1 once the shutdown has finished",
            registry=self.registry,
        )
        self._started_at: float | None = None

    def watch(self, status: Callable[[], FlightStatus], fallback_budget_seconds: float) -> None:
        """Read hooks, budget and connections from the flight's status at scrape time."""
        self.registry.register(_StatusCollector(status, fallback_budget_seconds))

    def phase_finished(self, record: PhaseRecord) -> None:
        """Record a phase."""
        if self._started_at is None:
            self._started_at = record.started_at
        self.phase_seconds.labels(record.label, str(record.outcome)).set(record.duration)
        self.phase_outcomes.labels(record.label, str(record.outcome)).inc()
        for name, entry in registry_entries(record):
            self.registry_outcomes.labels(record.label, name, str(entry.get("outcome"))).inc()

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
