"""What one drill scenario did: its moments, every caller's requests, and its floor."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar.drill.cluster import POD

if TYPE_CHECKING:
    from sidecar.drill.injected import AgentLaunch, InjectedPod
    from sidecar.drill.kubelet import Killed
    from sidecar.drill.load import LoadRun
    from sidecar.drill.params import Recipe, Routing


@dataclass
class ScenarioResult:
    """What one scenario did, on the loop clock; `t0` is the DELETE."""

    recipe: Recipe
    t0: float
    load: LoadRun
    killed: dict[str, Killed] = field(default_factory=dict)
    unready_at: float | None = None
    moved_at: float | None = None
    pod_gone_at: float | None = None
    #: The pinned clients' requests, together, when the drill ran any.
    pinned: LoadRun | None = None
    #: The idle keep-alive clients' requests, together, when the drill ran any.
    idle: LoadRun | None = None
    #: (type, reason) of the Kubernetes Events posted on the deleted pod, in order.
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The agent's JSON log lines (`coordinated` only).
    agent_log: list[dict[str, Any]] = field(default_factory=list)
    routing: Routing = "service"
    #: Registry routing: when the deleted pod's key was first written as down, and removed
    #: (deleted, or expired with its lease), as a watch on etcd saw it.
    marked_down_at: float | None = None
    removed_at: float | None = None
    #: Registry routing: the callers' first read that no longer listed the pod.
    callers_left_at: float | None = None
    #: Registry routing: whether the pod's key was still in etcd when the scenario ended.
    key_present_at_end: bool | None = None
    #: `coordinated`: the pod as plan_patch injected it, and how the agent was started from it.
    injected: InjectedPod | None = None
    agent_launch: AgentLaunch | None = None
    #: Where the pods ran: their own network namespaces, or loopback addresses (and why).
    network: str = ""

    @property
    def agent_summary(self) -> dict[str, Any] | None:
        """The agent's `shutdown_finished` line, if it wrote one."""
        return next((line for line in self.agent_log if line["event"] == "shutdown_finished"), None)

    @property
    def floor_at(self) -> float | None:
        """The earliest moment the app could get SIGTERM without losing a request.

        Once callers stopped choosing the pod (the data plane moved, or the registry's callers
        read it gone) and the last request the pod served ended: the slowest one in flight
        then, or a pinned client's last before it was told to close and moved away.
        """
        away = self.moved_at if self.routing == "service" else self.callers_left_at
        if away is None:
            return None
        runs = [run for run in (self.load, self.pinned, self.idle) if run is not None]
        served = [r.ended for run in runs for r in run.requests if r.served_by == POD]
        return max([away, *served])

    def summary(self) -> dict[str, Any]:
        """Every caller's requests counted (load, pinned, idle); latency and rate the load's."""
        summary = self.load.summary()
        failures = Counter(summary["failures"])
        for run in (self.pinned, self.idle):
            if run is not None:
                other = run.summary()
                for key in ("requests", "ok", "http_errors", "transport_errors"):
                    summary[key] += other[key]
                failures.update(other["failures"])
        summary["failures"] = dict(failures)
        return summary

    def row(self, grace_seconds: float) -> dict[str, Any]:
        """The scenario in the table's terms (seconds from the DELETE)."""
        app = self.killed.get("app")

        def since(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.t0, 2)

        gone = since(self.pod_gone_at)
        floor, sigterm = self.floor_at, app.sigterm_at if app else None
        above = None if floor is None or sigterm is None else round(sigterm - floor, 2)
        return {
            "scenario": self.recipe,
            "routing": self.routing,
            "network": self.network,
            **self.summary(),
            "floor_seconds": since(floor),
            "above_floor_seconds": above,
            "app_sigterm_seconds": since(app.sigterm_at if app else None),
            "app_exited_seconds": since(app.exited_at if app else None),
            "pod_gone_seconds": gone,
            "budget_left_seconds": None if gone is None else round(grace_seconds - gone, 2),
            "endpoint_unready_seconds": since(self.unready_at),
            "data_plane_moved_seconds": since(self.moved_at),
            "registry_marked_down_seconds": since(self.marked_down_at),
            "registry_removed_seconds": since(self.removed_at),
            "callers_left_seconds": since(self.callers_left_at),
            "key_present_at_end": self.key_present_at_end,
        }
