"""`make bench`: measure the agent and write docs/benchmarks.md with the commands that produced it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from measure import (
    agent_command,
    bare_command,
    idle_cpu,
    memory_and_start,
    rss_under_load,
    sample_cost,
    webhook_latency,
)

#: A pod's worst case: many held hooks (a kubelet retrying), and a slowloris filling the
#: agent's cap of 256 untrusted connections and more.
LOAD_HOOKS = 200
LOAD_SLOW_HEADS = 300

#: The injector under a busy API server: pod creations at this rate, for this long.
WEBHOOK_RATE = 200
#: Long enough that one stall of the shared machine (tens of ms, seen at times) is not 1 % of
#: the reviews on its own; the slowest review is reported beside the p99.
WEBHOOK_SECONDS = 30.0

#: The drill runs of `make bench`: (scenario, recipes, extra flags); one process each. Steady
#: load compares coordinated with sleep-15 and no-hook in the same run; at 1000/s the lead
#: makes at least 20 000 requests per recipe.
DRILL_RUNS: list[tuple[str, str, list[str]]] = [
    ("steady-100", "no-hook,sleep-15,coordinated", []),
    ("steady-1000", "no-hook,sleep-15,coordinated", ["--lead-seconds", "19"]),
    ("burst", "coordinated", []),
    ("idle", "coordinated", []),
    ("pinned", "coordinated", []),
    ("slow", "coordinated", []),
    ("propagation-6", "coordinated", []),
]
#: The scenario whose timeline is the document's picture.
PICTURED = "steady-1000"
#: Goals: steady load releases within this much of the floor and this share of sleep-15's
#: time; every other scenario within `OTHER_ABOVE_FLOOR_SECONDS`; coordinated loses nothing.
STEADY_ABOVE_FLOOR_SECONDS = 0.5
STEADY_SHARE_OF_SLEEP = 0.2
OTHER_ABOVE_FLOOR_SECONDS = 1.0


def webhook_section(figures: dict[str, float], seconds: float) -> list[str]:
    """The injector's latency and errors at WEBHOOK_RATE reviews/s."""
    p99_goal = "**met**" if figures["p99"] <= 5 else "**missed**"
    errors_goal = "**met**" if figures["errors"] == 0 else "**missed**"
    return [
        f"## The injector webhook at {WEBHOOK_RATE} reviews/s",
        "",
        f"`shutdown-coordinator injector` as the image runs it (`--cert --key --template --token-file "
        f"--port`, certificates made by `shutdown-coordinator certs`), on 127.0.0.1 over real TLS, "
        f"sent pod CREATE reviews open loop for {seconds:g} s over keep-alive connections.",
        "",
        "| figure | value | goal |",
        "| --- | --- | --- |",
        f"| reviews sent (achieved rate /s) | {figures['requests']:.0f} ({figures['rate']:.1f}) | {WEBHOOK_RATE} |",
        f"| p50 latency (ms) | {figures['p50']:.2f} | - |",
        f"| p99 latency (ms) | {figures['p99']:.2f} | ≤ 5 ms: {p99_goal} |",
        f"| slowest review (ms) | {figures['max']:.2f} | - |",
        f"| errors | {figures['errors']:.0f} | 0: {errors_goal} |",
        f"| inside the injector, p50 / p99 (ms) | {figures['server_p50']:.2f} / {figures['server_p99']:.2f} | - |",
        f"| the client's own lateness in sending, p99 (ms) | {figures['send_lag_p99']:.2f} | - |",
        "",
        "Each review is a Deployment's pod with `istio-proxy` and one settings annotation, injected",
        "every time (agent, hooks on both containers, settings); every review tunes the agent",
        "differently, so the injector's remembered verdicts never help and the figures are its",
        "slowest path. An error is a transport failure, an answer other than 200, or an answer",
        "without the patch. Reviews are sent on schedule whether or not earlier ones were answered",
        "(open loop), and latency counts from the moment each is handed to the client (aiohttp, in",
        "the bench process, on the same 2 cores): the client's own timer wakes up to a millisecond",
        "late (epoll rounds timeouts to whole milliseconds), reported apart as its lateness. The",
        "injector logs one JSON line per review, as in a pod; its `milliseconds` (handler start to",
        "answer: TLS, HTTP parsing and the client excluded) is the row *inside the injector*.",
        "",
    ]


def drill_run(
    scenario: str, recipes: str, extra: list[str], picture: str
) -> tuple[str, dict[str, Any]]:
    """One drill process; its command as printed, and its JSON document."""
    out_json = Path(f"out/drill-{scenario}.json")
    out_json.parent.mkdir(exist_ok=True)
    picture = picture if scenario == PICTURED else f"out/drill-{scenario}.svg"
    flags = ["--scenario", scenario, "--recipes", recipes, *extra, "--json", str(out_json)]
    flags += ["--picture", picture]
    subprocess.run([sys.executable, "-m", "sidecar", "drill", *flags], check=True, timeout=900)
    return f"python -m sidecar drill {' '.join(flags)}", json.loads(out_json.read_text())


def drill_goal(scenario: str, row: dict[str, Any], sleep: dict[str, Any] | None) -> str:
    """The goal line of a coordinated row, met or missed; empty for the other recipes."""
    if row["scenario"] != "coordinated":
        return ""
    above = row["above_floor_seconds"]
    checks = [("0 failed", row["failed"] == 0)]
    if scenario.startswith("steady"):
        checks.append(
            (
                f"≤ {STEADY_ABOVE_FLOOR_SECONDS:g} s above floor",
                above is not None and above <= STEADY_ABOVE_FLOOR_SECONDS,
            )
        )
        if sleep is not None and sleep["app_sigterm_seconds"]:
            share = row["app_sigterm_seconds"] / sleep["app_sigterm_seconds"]
            checks.append(
                (
                    f"≤ {STEADY_SHARE_OF_SLEEP:g} × sleep-15 ({share:.2f})",
                    share <= STEADY_SHARE_OF_SLEEP,
                )
            )
    else:
        checks.append(
            (
                f"≤ {OTHER_ABOVE_FLOOR_SECONDS:g} s above floor",
                above is not None and above <= OTHER_ABOVE_FLOOR_SECONDS,
            )
        )
    return "; ".join(f"{text}: **{'met' if ok else 'missed'}**" for text, ok in checks)


def drill_section(picture: str) -> list[str]:
    """Each drill scenario, coordinated beside sleep-15 and no-hook under steady load."""
    runs = [
        (name, *drill_run(name, recipes, extra, picture)) for name, recipes, extra in DRILL_RUNS
    ]
    network = runs[0][2]["scenarios"][0]["network"]
    lines = [
        "## The drill: a pod deleted under each scenario",
        "",
        f"Each scenario is one `python -m sidecar drill` run (part of `make bench`; commands below). Pods: {network}.",
        "The agent runs with its default settings (no tuning annotation). Grace 30 s, 2 replicas. The",
        "**floor** is the earliest safe SIGTERM: callers stopped choosing the pod (the data plane moved,",
        "propagation delay after the endpoint went not ready) and the last request the pod served ended",
        "(the slowest in flight then, or a pinned client's last before it was told to close and moved).",
        "*Above floor* is app SIGTERM minus floor; negative means released too early. Failed counts every",
        f"caller (load, pinned and idle clients). The timeline `{picture}` is {PICTURED}'s.",
        "",
        "| scenario | recipe | requests | failed | failures | p99 ms | floor s | app SIGTERM s | above floor s | pod gone s | rate achieved/asked | goal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, _, doc in runs:
        rows = {r["scenario"]: r for r in doc["scenarios"]}
        for recipe, row in rows.items():
            failures = ", ".join(f"{k}: {v}" for k, v in row["failures"].items()) or "-"
            lines.append(
                f"| {name} | {recipe} | {row['requests']} | {row['failed']} | {failures} | {row['latency_p99_ms']} "
                f"| {row['floor_seconds']} | {row['app_sigterm_seconds']} | {row['above_floor_seconds']} "
                f"| {row['pod_gone_seconds']} | {row['rate']} | {drill_goal(name, row, rows.get('sleep-15'))} |"
            )
    lines += [
        "",
        "Goals: steady load, coordinated released ≤ 0.5 s above the floor and at ≤ 0.2 × sleep-15's",
        "SIGTERM time in the same run; every other scenario 0 failed and released within 1 s of the floor.",
        "",
    ]
    lines += ["Commands:", ""] + [f"- {name}: `{command}`" for name, command, _ in runs] + [""]
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--runtime-python", default=sys.executable, help="python of a runtime-only venv"
    )
    parser.add_argument("--drill-picture", default="docs/drill-timeline.svg")
    parser.add_argument("--webhook-seconds", type=float, default=WEBHOOK_SECONDS)
    args = parser.parse_args()
    python = args.runtime_python
    command = (
        f"make bench` (`python bench/run.py --runtime-python .venv-runtime/bin/python --out {args.out} "
        f"--idle-seconds {args.idle_seconds:g} --runs {args.runs} --webhook-seconds {args.webhook_seconds:g}"
    )
    agent_rss, agent_start = await memory_and_start(
        lambda workdir, port: agent_command(python, workdir, port), args.runs
    )
    bare_rss, bare_start = await memory_and_start(
        lambda _workdir, port: bare_command(python, port), args.runs
    )
    cpu = await idle_cpu(python, args.idle_seconds)
    loaded_rss = await rss_under_load(python, hooks=LOAD_HOOKS, slow_heads=LOAD_SLOW_HEADS)
    samples = {n: sample_cost(n) for n in (100, 1000, 10000)}
    webhook = await webhook_latency(python, WEBHOOK_RATE, args.webhook_seconds)
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {platform.node()} ({os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}. Medians of {args.runs} runs where repeated.",
        "",
        "## The idle agent",
        "",
        "| figure | agent | bare aiohttp hello-world | goal |",
        "| --- | --- | --- | --- |",
        f"| RSS after start (MiB) | {agent_rss:.1f} | {bare_rss:.1f} | agent ≤ 1.15 × bare: **{agent_rss / bare_rss:.2f} ×** |",
        f"| start to /readyz 200 (s) | {agent_start:.3f} | {bare_start:.3f} | ≤ 0.5 s |",
        f"| CPU while idle over {args.idle_seconds:g} s (% of one core) | {cpu:.3f} | - | ≤ 0.1 % |",
        f"| RSS with {LOAD_HOOKS} held hooks and {LOAD_SLOW_HEADS} slow request heads (MiB) | {loaded_rss:.1f} | - | sizes the memory limit |",
        "",
        "Both servers run from a venv with the runtime dependencies only (as in the image); a dev venv",
        "adds rich, which structlog imports when present (+5 MiB). The agent makes no connection and",
        "runs no timer before the first hook; kubernetes-asyncio is not imported while idle.",
        "",
        "## One traffic sample (ms, median of 30), established loopback connections on one watched port",
        "",
        "| connections | TIME_WAIT sockets present | kernel dump alone | netlink sock_diag read | read / dump (goal ≤ 1.2 at 1 000 and 10 000) | netlink read + assess | /proc/net/tcp{,6} read |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, cost in samples.items():
        verdict = "" if n < 1000 else (" **met**" if cost["ratio"] <= 1.2 else " **missed**")
        lines.append(
            f"| {n} | {cost['time_wait']:.0f} | {cost['floor']:.2f} | {cost['netlink']:.2f} "
            f"| {cost['ratio']:.2f}×{verdict} | {cost['netlink+assess']:.2f} | {cost['proc']:.2f} |"
        )
    lines += [
        "",
        "Times in ms, medians of 30, the dump and the sampler timed in turns. netlink: one dump per",
        "address family, the port filter compiled to inet_diag bytecode, tcp_info per socket (what the",
        "agent uses), replies parsed a run of equal messages at a time",
        "(`sidecar/adapters/traffic/inetdiag.py`). Kernel dump alone: the very requests the sampler",
        "sends (states ESTABLISHED, CLOSE_WAIT and LISTEN, INET_DIAG_INFO only, the port bytecode),",
        "only the message headers walked: the floor of any sock_diag sample in Python. TIME_WAIT",
        "sockets present on the machine are walked by every dump and raise both. /proc: the fallback,",
        "without per-socket timing. The earlier goal of 5 ms at 10 000 connections is retired: the",
        "kernel's own dump costs more than that here. The sampler stretches its interval so that one",
        "sample takes at most a fifth of a core (`sidecar/shutdown/observe.py`).",
        "",
    ]
    lines += webhook_section(webhook, args.webhook_seconds)
    lines += drill_section(args.drill_picture)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
