"""The drill's callers for one scenario: the load, pinned clients, idle keep-alive clients.

The load goes where `target` says (the ingress, or a replica picked from the registry),
evenly or in bursts. Pinned clients hold one keep-alive connection each to the address
`pinned_to` gives (the deleted pod, until the data plane moved), as callers through a
ClusterIP do. Idle clients hold one keep-alive connection each to the load's target and send
rarely, so the ingress keeps idle pooled connections to every pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sidecar.drill.load import LoadRun, generate, merged, pinned

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.drill.params import DrillParams


@dataclass
class Clients:
    """The running callers; `finish` once `stop` is set."""

    stop: asyncio.Event
    load: asyncio.Task[LoadRun]
    pinned: list[asyncio.Task[LoadRun]] = field(default_factory=list)
    idle: list[asyncio.Task[LoadRun]] = field(default_factory=list)

    async def finish(self) -> tuple[LoadRun, LoadRun | None, LoadRun | None]:
        """The load's run, and the pinned and idle clients' runs each merged into one."""
        self.stop.set()
        load = await self.load
        pinned_runs = [await task for task in self.pinned]
        idle_runs = [await task for task in self.idle]
        return load, merged(pinned_runs), merged(idle_runs)

    async def abandon(self) -> None:
        """Stop them all and wait for them, whatever happened (a scenario that failed)."""
        self.stop.set()
        tasks = [self.load, *self.pinned, *self.idle]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)


def connections_for(params: DrillParams) -> int:
    """Little's law: every request in flight at the slowest latency, twice; a whole burst."""
    in_flight = params.rate_per_second * params.latency_ms[1] / 1000 * 2
    burst = params.rate_per_second * params.burst_every_seconds
    return max(64, math.ceil(in_flight), math.ceil(burst))


def start(
    target: str | Callable[[], str],
    params: DrillParams,
    pinned_to: Callable[[], str],
) -> Clients:
    """Start the load and the scenario's other clients."""
    stop = asyncio.Event()
    load = asyncio.create_task(
        generate(
            target,
            rate_per_second=params.rate_per_second,
            stop=stop,
            connections=connections_for(params),
            burst_every_seconds=params.burst_every_seconds,
        ),
        name="load",
    )
    clients = Clients(stop, load)
    if params.pinned_interval_seconds > 0:
        every = params.pinned_interval_seconds
        clients.pinned = [
            asyncio.create_task(
                pinned(
                    pinned_to,
                    interval_seconds=every,
                    stop=stop,
                    first_after_seconds=every * i / params.pinned_clients,
                ),
                name=f"pinned-{i}",
            )
            for i in range(params.pinned_clients)
        ]
    resolve = target if callable(target) else lambda: target
    every = params.idle_interval_seconds
    clients.idle = [
        asyncio.create_task(
            pinned(
                resolve,
                interval_seconds=every,
                stop=stop,
                first_after_seconds=every * i / params.idle_clients,
            ),
            name=f"idle-{i}",
        )
        for i in range(params.idle_clients)
    ]
    return clients
