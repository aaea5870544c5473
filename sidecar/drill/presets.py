"""The drill's named scenarios: the traffic a pod is deleted under (`--scenario NAME`).

Each is a set of DrillParams values; flags given beside `--scenario` win over them. What the
scenario shows, and its floor (the earliest moment the app could go without losing a
request), is said in `description`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Scenario:
    """A named preset of the drill's parameters."""

    description: str
    values: dict[str, Any] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    "steady-100": Scenario("steady load, 100 requests/s of 20-300 ms, propagation 2 s"),
    "steady-1000": Scenario(
        "steady load, 1000 requests/s of 20-300 ms, propagation 2 s", {"rate_per_second": 1000.0}
    ),
    "burst": Scenario(
        "bursts: 200 requests at once every 1 s (200/s on average), silent in between",
        {"rate_per_second": 200.0, "burst_every_seconds": 1.0},
    ),
    "idle": Scenario(
        "idle keep-alive clients: 40 clients through the ingress, each sending once every 4 s "
        "on its own connection, beside 10 requests/s; the ingress pools idle connections to "
        "the pod",
        {"rate_per_second": 10.0, "idle_clients": 40, "idle_interval_seconds": 4.0},
    ),
    "pinned": Scenario(
        "10 clients pinned on keep-alive connections straight to the pod (as through a "
        "ClusterIP), each sending every 0.2 s until told to close, beside 100 requests/s "
        "through the ingress",
        {"pinned_clients": 10, "pinned_interval_seconds": 0.2},
    ),
    "slow": Scenario(
        "slow requests: 50 requests/s of 1-3 s each",
        {"rate_per_second": 50.0, "latency_ms": (1000, 3000)},
    ),
    "propagation-6": Scenario(
        "steady load, 100 requests/s, the data plane 6 s behind the EndpointSlice",
        {"propagation_delay_seconds": 6.0},
    ),
}
#: What `make demo` runs when no scenario is named.
DEFAULT_SCENARIO = "steady-100"
