"""`make demo`: delete one pod under load with the agent in charge, and print what happened."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from sidecar.drill.scenario import Outcome, Params, run


def _at(outcome: Outcome, moment: float | None) -> str:
    return "-" if moment is None else f"{moment - outcome.t0:6.2f} s"


def render(outcome: Outcome, params: Params) -> str:
    """A short report: requests, failures, and the moments that matter."""
    failures = Counter(r.error or f"HTTP {r.status}" for r in outcome.failures())
    to_pod = outcome.to_pod()
    finished = next(
        (line for line in outcome.agent_log if line.get("event") == "shutdown_finished"), {}
    )
    lines = [
        "Pod deletion under load (real app with naive SIGTERM handling, real Envoy, the agent,",
        "  the pod deleted through the control-plane stand-in's API)",
        (
            f"  grace {params.grace_seconds:.0f} s, "
            f"slice controller {params.controller_delay_seconds:.1f} s, "
            f"data-plane propagation {params.propagation_delay_seconds:.1f} s, "
            f"latency {params.latency_ms[0]}-{params.latency_ms[1]} ms, "
            f"{params.workers} workers + 1 pinned client"
        ),
        "",
        f"  requests             {len(outcome.requests):>6}   (to the deleted pod: {len(to_pod)})",
        f"  failed               {len(outcome.failures()):>6}   {dict(failures) or ''}",
        f"  endpoint not ready   {_at(outcome, outcome.unready_at)}   (its EndpointSlice)",
        f"  data plane moved     {_at(outcome, outcome.flip_at)}",
        f"  app hook answered    {_at(outcome, outcome.hook_returned.get('app'))}   (then SIGTERM)",
        f"  app exited           {_at(outcome, outcome.exited.get('app'))}",
        f"  proxy hook answered  {_at(outcome, outcome.hook_returned.get('proxy'))}",
        f"  budget left          {finished.get('budget_left_seconds', '-')} s",
        "",
        "  phases:",
    ]
    for name, phase in finished.get("phases", {}).items():
        lines.append(f"    {name:<14} {phase['outcome']:<9} {phase['duration_seconds']:6.2f} s")
    return "\n".join(lines)


def main() -> None:
    """Run the scenario in a temporary folder and print the report."""
    params = Params()
    with tempfile.TemporaryDirectory(prefix="shutdown-demo-") as workdir:
        outcome = asyncio.run(run(Path(workdir), params))
    print(render(outcome, params))  # noqa: T201 - this is the demo's output


if __name__ == "__main__":
    main()
