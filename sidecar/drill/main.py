"""`shutdown-coordinator drill`: the scenarios side by side, then the table, picture and JSON."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

from sidecar.drill.injected import annotations_set
from sidecar.drill.iproute import NetworkError
from sidecar.drill.network import NetworkPlan
from sidecar.drill.params import DrillParams, Recipe, params_from
from sidecar.drill.picture import timeline_svg
from sidecar.drill.presets import SCENARIOS
from sidecar.drill.report import document, rows, table
from sidecar.drill.scenarios import ScenarioResult, pod_names, run_scenario
from sidecar.errors import ConfigError


async def run_all(params: DrillParams, recipes: list[Recipe]) -> list[ScenarioResult]:
    """Each scenario in its own folder, one after the other (they would share the CPU).

    Every recipe runs once per routing: through the Service first, then through the registry.
    Each gets a fresh network (namespaces, where possible), deleted once it ended.
    """
    results = []
    plan = NetworkPlan(params.network)
    with tempfile.TemporaryDirectory(prefix="shutdown-drill-") as folder:
        for routing in params.routings:
            for recipe in recipes:
                workdir = Path(folder) / f"{routing}-{recipe}"
                workdir.mkdir()
                async with plan.pods(pod_names(params)) as pods:
                    results.append(await run_scenario(workdir, recipe, params, routing, pods))
    return results


def run(args: argparse.Namespace) -> str:
    """Run the drill and return what to print; writes the picture and the JSON."""
    params, recipes = params_from(args)
    try:
        results = asyncio.run(run_all(params, recipes))
    except NetworkError as e:
        raise ConfigError(f"--network {params.network}: {e}") from e
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    args.picture.write_text(timeline_svg(results, params), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(document(results, params), indent=2), encoding="utf-8")
    low, high = params.latency_ms
    scenario = SCENARIOS[params.scenario].description
    shown = (
        f"scenario {params.scenario}: {scenario}\n"
        f"rate {params.rate_per_second:g}/s, latency {low}-{high} ms, "
        f"propagation {params.propagation_delay_seconds:g} s, grace {params.grace_seconds} s, "
        f"{params.replicas} replicas"
    )
    if "registry" in params.routings:
        shown += (
            f"; registry: callers read etcd every {params.registry_refresh_seconds:g} s, "
            f"leases of {params.lease_ttl_seconds} s"
        )
    networks = sorted({result.network for result in results})
    shown += f"\nnetwork: {'; '.join(networks)}"
    if "coordinated" in recipes:
        shown += f"\ncoordinated: injected by plan_patch; {_tuning(results)}"
    floors = "\n".join(floor_lines(results, params))
    return f"{shown}\n\n{table(results, params)}\n\n{floors}\n\ntimeline: {args.picture}"


def floor_lines(results: list[ScenarioResult], params: DrillParams) -> list[str]:
    """How far above its floor each recipe released the app, and what it lost."""
    lines = [
        (
            "floor: the earliest safe SIGTERM, once callers stopped choosing the pod and the "
            "last request it served ended (in flight, or a pinned client's before it moved)"
        )
    ]
    for row in rows(results, params):
        floor, above, sigterm = (
            row[key] for key in ("floor_seconds", "above_floor_seconds", "app_sigterm_seconds")
        )
        if floor is None or above is None:
            lines.append(f"  {row['label']}: no floor (callers never left the pod)")
            continue
        where = "above" if above >= 0 else "BEFORE"
        lines.append(
            f"  {row['label']}: floor {floor:.2f} s, app SIGTERM {sigterm:.2f} s, "
            f"{abs(above):.2f} s {where} it; {row['failed']} failed of {row['requests']}"
        )
    return lines


def _tuning(results: list[ScenarioResult]) -> str:
    """What the drill set on the coordinated pod beyond the plain pod: nothing that tunes it."""
    keys = {
        key
        for result in results
        if result.injected is not None
        for key in annotations_set(result.injected.plain)
    }
    shown = "the agent runs with its default settings (no tuning annotation)"
    if keys:
        shown += f"; annotations set: {', '.join(sorted(keys))} (each pod's ports on loopback)"
    return shown
