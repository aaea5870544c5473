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
WEBHOOK_SECONDS = 10.0

DRILL_ARGS = ["--rate", "1000", "--lead-seconds", "19", "--propagation-delay", "2"]


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
        f"| errors | {figures['errors']:.0f} | 0: {errors_goal} |",
        f"| inside the injector, p50 / p99 (ms) | {figures['server_p50']:.2f} / {figures['server_p99']:.2f} | - |",
        "",
        "Each review is a Deployment's pod with `istio-proxy` and one settings annotation, injected",
        "every time (agent, hooks on both containers, settings); an error is a transport failure, an",
        "answer other than 200, or an answer without the patch. Latency counts from the moment each",
        "review was due, so waiting behind a slow answer counts; the client (in the bench process, on",
        "the same machine) is part of it. The injector logs one JSON line per review, as in a pod;",
        "its `milliseconds` (handler start to answer: TLS, HTTP parsing and the client excluded) is the last row.",
        "",
    ]


def drill_section(picture: str) -> list[str]:
    """The full-size drill, each recipe side by side, and how coordinated compares."""
    out_json = Path("out/drill-full.json")
    out_json.parent.mkdir(exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "sidecar",
        "drill",
        *DRILL_ARGS,
        "--json",
        str(out_json),
        "--picture",
        picture,
    ]
    subprocess.run(argv, check=True, timeout=900)
    doc = json.loads(out_json.read_text())
    params, rows = doc["params"], {r["scenario"]: r for r in doc["scenarios"]}
    floor = params["propagation_delay_seconds"] + params["latency_ms"][1] / 1000
    coordinated, sleep = rows["coordinated"], rows["sleep-15"]
    ratio = coordinated["app_sigterm_seconds"] / sleep["app_sigterm_seconds"]
    lines = [
        "## The drill at full size",
        "",
        f"Produced by `python -m sidecar drill {' '.join(DRILL_ARGS)} --json {out_json} --picture {picture}`"
        f" (part of `make bench`). Latency {params['latency_ms'][0]}-{params['latency_ms'][1]} ms, grace "
        f"{params['grace_seconds']} s, {params['replicas']} replicas; the timeline is `{picture}`.",
        "",
        "| scenario | requests | failed | failures | p99 ms | delete → app SIGTERM (s) | delete → pod gone (s) | rate achieved/asked | goal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        goal = "0 failed" if name == "coordinated" else ""
        failures = ", ".join(f"{k}: {v}" for k, v in row["failures"].items()) or "-"
        lines.append(
            f"| {name} | {row['requests']} | {row['failed']} | {failures} | {row['latency_p99_ms']} "
            f"| {row['app_sigterm_seconds']} | {row['pod_gone_seconds']} | {row['rate']} | {goal} |"
        )
    lines += [
        "",
        f"- coordinated's delete → app SIGTERM over sleep-15's, same run: **{ratio:.2f}** (goal ≤ 0.25).",
        f"- floor = propagation delay + slowest request = {floor:.2f} s; coordinated released the app at "
        f"{coordinated['app_sigterm_seconds']} s, **{coordinated['app_sigterm_seconds'] - floor:.2f} s** above it "
        "(goal: within 1 s).",
        "",
    ]
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
        "| connections | TIME_WAIT sockets present | kernel dump alone | netlink sock_diag read | netlink read + assess | /proc/net/tcp{,6} read | goal |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, cost in samples.items():
        goal = "≤ 5 ms" if n == 10000 else ""
        lines.append(
            f"| {n} | {cost['time_wait']:.0f} | {cost['floor']:.2f} | {cost['netlink']:.2f} | {cost['netlink+assess']:.2f} "
            f"| {cost['proc']:.2f} | {goal} |"
        )
    lines += [
        "",
        "netlink: one dump per address family, the port filter compiled to inet_diag bytecode, tcp_info",
        "per socket (what the agent uses). /proc: the fallback, without per-socket timing. Kernel dump",
        "alone: the same netlink requests with only the message headers walked, the floor of any",
        "sock_diag sample in Python. The sampler stretches its interval so that one sample takes at",
        "most a fifth of a core (`sidecar/shutdown/observe.py`).",
        "",
    ]
    lines += webhook_section(webhook, args.webhook_seconds)
    lines += drill_section(args.drill_picture)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
