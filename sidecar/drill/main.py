"""`shutdown-coordinator drill`: the scenarios side by side, then the table, picture and JSON."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

from sidecar.drill.injected import tuning
from sidecar.drill.params import DrillParams, Recipe, params_from
from sidecar.drill.report import document, table, timeline_svg
from sidecar.drill.scenarios import ScenarioResult, run_scenario


async def run_all(params: DrillParams, recipes: list[Recipe]) -> list[ScenarioResult]:
    """Each scenario in its own folder, one after the other (they would share the CPU).

    Every recipe runs once per routing: through the Service first, then through the registry.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="shutdown-drill-") as folder:
        for routing in params.routings:
            for recipe in recipes:
                workdir = Path(folder) / f"{routing}-{recipe}"
                workdir.mkdir()
                results.append(await run_scenario(workdir, recipe, params, routing))
    return results


def run(args: argparse.Namespace) -> str:
    """Run the drill and return what to print; writes the picture and the JSON."""
    params, recipes = params_from(args)
    results = asyncio.run(run_all(params, recipes))
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    args.picture.write_text(timeline_svg(results, params), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(document(results, params), indent=2), encoding="utf-8")
    low, high = params.latency_ms
    shown = (
        f"rate {params.rate_per_second:g}/s, latency {low}-{high} ms, "
        f"propagation {params.propagation_delay_seconds:g} s, grace {params.grace_seconds} s, "
        f"{params.replicas} replicas"
    )
    if "registry" in params.routings:
        shown += (
            f"; registry: callers read etcd every {params.registry_refresh_seconds:g} s, "
            f"leases of {params.lease_ttl_seconds} s"
        )
    if "coordinated" in recipes:
        tuned = ", ".join(f"{key} {value}" for key, value in tuning(params).items())
        shown += f"\ncoordinated: injected by plan_patch, tuned by annotation: {tuned}"
    return f"{shown}\n\n{table(results, params)}\n\ntimeline: {args.picture}"
