"""Command line: parse arguments, load settings, configure logs, run; sole owner of exit codes."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from sidecar import __version__, logs, settings
from sidecar.errors import AgentStopError, ConfigError
from sidecar.model.deadline import plan_from_settings
from sidecar.model.plan import release_groups

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sidecar.model.deadline import Budget

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; a program's own arguments are added only when it is the command asked for.

    The agent must not pay at start for the injector's imports (TLS, cryptography, YAML
    round-tripping): they would stay in its memory for the pod's whole life.
    """
    parser = argparse.ArgumentParser(
        prog="shutdown-coordinator", description="Lossless pod shutdown: ordered preStop release."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    config_help = "settings file (YAML); default: $SHUTDOWN_COORDINATOR_CONFIG"
    agent = commands.add_parser("agent", help="run the sidecar that answers preStop hooks")
    agent.add_argument(
        "-c", "--config", default=os.environ.get("SHUTDOWN_COORDINATOR_CONFIG"), help=config_help
    )
    agent.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    check = commands.add_parser("check", help="validate settings and print the effective plan")
    check.add_argument(
        "-c", "--config", default=os.environ.get("SHUTDOWN_COORDINATOR_CONFIG"), help=config_help
    )
    for name, (help_text, module) in _PROGRAM_ARGUMENTS.items():
        program = commands.add_parser(name, help=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(program)
    return parser


#: Programs beside the agent: their help line, and the module that adds their arguments.
_PROGRAM_ARGUMENTS = {
    "drill": ("delete a pod under load with each shutdown recipe", "sidecar.drill.params"),
    "inject": ("add the coordinator to workloads (YAML) and print them", "sidecar.injector.inject"),
    "injector": ("serve the mutating admission webhook (TLS)", "sidecar.injector.main"),
    "certs": (
        "write a CA and the webhook's serving certificate; set the caBundle",
        "sidecar.injector.certs",
    ),
}


def _plan_document(loaded: settings.Settings) -> dict[str, object]:
    groups = release_groups(loaded)
    budget = plan_from_settings(loaded, started_at=0.0)
    document = asdict(loaded)
    document["server"]["token"] = "***" if loaded.server.token else None
    document["traffic"]["ignore_peers"] = [str(n) for n in loaded.traffic.ignore_peers]
    document["plan"] = [
        {"release": list(g.names), "latest_seconds_after_first_hook": round(t, 3)}
        for g, t in zip(groups, budget.release_by, strict=True)
    ]
    document["effective"] = _effective(loaded.budget, budget)
    return document


def _effective(configured: settings.BudgetSettings, budget: Budget) -> dict[str, object]:
    """The reserve and margin the plan really uses, and which configured values it capped."""
    used = {
        "sigterm_reserve_seconds": round(budget.sigterm_reserve_seconds, 3),
        "answer_margin_seconds": round(budget.answer_margin_seconds, 3),
    }
    why = {
        "sigterm_reserve_seconds": "each reserve is at most a fifth of the grace, and the "
        "first release never comes before half of it",
        "answer_margin_seconds": "the margin is at most a quarter of the grace",
    }
    capped = [
        f"budget.{name}: {getattr(configured, name):g} configured, {value:g} used ({why[name]})"
        for name, value in used.items()
        if value < getattr(configured, name)
    ]
    return {"budget": used, "capped": capped}


def _drill(args: argparse.Namespace) -> int:
    from sidecar.drill.main import run  # noqa: PLC0415 - the agent does not need it

    logs.configure(json=False)
    try:
        print(run(args))
    except ConfigError as e:  # a bad parameter; anything else is a failure with its traceback
        print(f"shutdown-coordinator drill: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _inject(args: argparse.Namespace) -> int:
    from sidecar.injector.inject import run  # noqa: PLC0415 - only this command needs it

    return run(args)


def _injector(args: argparse.Namespace) -> int:
    from sidecar.injector.main import run  # noqa: PLC0415 - only this command needs it

    return run(args)


def _certs(args: argparse.Namespace) -> int:
    from sidecar.injector.certs import run  # noqa: PLC0415 - only this command needs it

    return run(args)


#: Commands that read no agent settings: each parses its own arguments and owns its output.
_PROGRAMS: dict[str, Callable[[argparse.Namespace], int]] = {
    "inject": _inject,
    "injector": _injector,
    "certs": _certs,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    args = _parser(command).parse_args(arguments)
    if args.command == "drill":
        return _drill(args)
    if args.command in _PROGRAMS:
        return _PROGRAMS[args.command](args)
    try:
        loaded = settings.load(args.config)
    except ConfigError as e:
        errors = str(e).splitlines()
        shown = f" {errors[0]}" if len(errors) == 1 else "".join(f"\n  {e}" for e in errors)
        print(f"shutdown-coordinator: invalid settings:{shown}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        print(json.dumps(_plan_document(loaded), indent=2, default=str))
        return EXIT_OK
    logs.configure(json=None if args.log_format == "auto" else args.log_format == "json")
    return _agent(loaded)


def _agent(loaded: settings.Settings) -> int:
    from sidecar.agent import runtime  # noqa: PLC0415 - `check` should not pay for the server's imports

    try:
        asyncio.run(runtime.run(loaded))
    except ConfigError as e:  # settings that only this pod's identity shows wrong (templates)
        print(f"shutdown-coordinator: invalid settings for this pod: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except AgentStopError as e:
        print(f"shutdown-coordinator: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        print(f"shutdown-coordinator: cannot serve: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
