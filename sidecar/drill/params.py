"""The drill's parameters and command-line options (light: the agent's CLI parses them too)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

from sidecar.drill.presets import DEFAULT_SCENARIO, SCENARIOS
from sidecar.errors import ConfigError

if TYPE_CHECKING:
    import argparse

Recipe = Literal["no-hook", "sleep-15", "netstat-loop", "coordinated"]
RECIPES: tuple[Recipe, ...] = ("no-hook", "sleep-15", "netstat-loop", "coordinated")
#: How callers find the replicas: the Service (ingress and data plane), or a registry (etcd).
Routing = Literal["service", "registry"]
ROUTINGS: tuple[Routing, ...] = ("service", "registry")
#: Where pods live (sidecar/drill/network.py).
NetworkMode = Literal["auto", "netns", "loopback"]
NETWORK_MODES: tuple[NetworkMode, ...] = ("auto", "netns", "loopback")
#: The classic fixed sleep of the `sleep-15` recipe, when the grace leaves room for it.
CLASSIC_SLEEP_SECONDS = 15


def fitting_sleep_seconds(grace_seconds: int) -> int:
    """The fixed sleep that fits a grace: half of it in whole seconds (B17), at most 15 s.

    A sleep cannot tell a drained app from a busy one, so it leaves the app as long for its
    SIGTERM handling as it sleeps (docs/budget.md); 15 s at the usual 30 s grace.
    """
    return min(CLASSIC_SLEEP_SECONDS, grace_seconds // 2)


@dataclass(frozen=True)
class DrillParams:
    """The knobs of a drill run (the same for every scenario of it)."""

    rate_per_second: float = 100.0
    #: Load before the deletion, so there is traffic to protect.
    lead_seconds: float = 2.0
    #: Load after the deletion's end, to show where traffic went.
    tail_seconds: float = 1.0
    #: The load runs at least this long in all (0: lead + the shutdown + tail).
    duration_seconds: float = 0.0
    latency_ms: tuple[int, int] = (20, 300)
    propagation_delay_seconds: float = 2.0
    grace_seconds: int = 30
    replicas: int = 2
    sleep_seconds: float = 15.0
    #: The proxy (and the agent) run as native sidecars: SIGTERM after the app exited (C1-C3).
    native: bool = False
    #: How long the EndpointSlice controller takes to mark the deleted pod not ready (D10).
    controller_delay_seconds: float = 0.0
    #: A client pinned on one keep-alive connection to the deleted pod sends this often, as a
    #: caller through a ClusterIP does; it moves only when told `Connection: close` (0: none).
    pinned_interval_seconds: float = 0.0
    #: How many such pinned clients (when `pinned_interval_seconds` is set).
    pinned_clients: int = 1
    #: The load comes in bursts: each period's requests at once at its start (0: evenly).
    burst_every_seconds: float = 0.0
    #: Clients on keep-alive connections through the ingress, each sending once per interval.
    idle_clients: int = 0
    idle_interval_seconds: float = 4.0
    #: The named scenario these values came from (sidecar/drill/presets.py).
    scenario: str = DEFAULT_SCENARIO
    #: Each recipe runs once per routing, in this order.
    routings: tuple[Routing, ...] = ("service",)
    #: Registry routing: how often callers read the registry again. Spring Cloud's Eureka
    #: client fetches every 30 s (`registryFetchIntervalSeconds`); shorter here, so a run is short.
    registry_refresh_seconds: float = 2.0
    #: Registry routing: each replica's lease TTL; 10 s is go-zero's (`discov.TimeToLive`).
    lease_ttl_seconds: int = 10
    #: Where pods live: their own network namespaces (root and iproute2), loopback addresses,
    #: or the first where possible (sidecar/drill/network.py).
    network: NetworkMode = "auto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The drill's options; the defaults are the small size `make demo` runs."""
    defaults = DrillParams()
    parser.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        help=f"the traffic the pod is deleted under, one of {', '.join(SCENARIOS)}; "
        "the flags below win over its values",
    )
    parser.add_argument(
        "--recipes",
        "--scenarios",  # its old name
        dest="recipes",
        default=",".join(RECIPES),
        help=f"the shutdown recipes to compare, comma-separated, of {', '.join(RECIPES)}",
    )
    parser.add_argument(
        "--routing",
        default=",".join(defaults.routings),
        help=f"comma-separated, of {', '.join(ROUTINGS)}: how callers find the replicas",
    )
    parser.add_argument(
        "--registry-refresh",
        type=float,
        default=defaults.registry_refresh_seconds,
        help="registry routing: seconds between the callers' reads of the registry",
    )
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=defaults.lease_ttl_seconds,
        help="registry routing: each replica's lease TTL in seconds",
    )
    parser.add_argument("--rate", type=float, help="requests/s")
    parser.add_argument(
        "--lead-seconds", type=float, help=f"load before the delete ({defaults.lead_seconds:g})"
    )
    parser.add_argument(
        "--tail-seconds",
        type=float,
        help=f"load after the pod is gone ({defaults.tail_seconds:g})",
    )
    parser.add_argument(
        "--duration", type=float, help="least load time in all (0: lead + shutdown + tail)"
    )
    parser.add_argument(
        "--latency-ms",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="each request takes a random time in this range (for example 1000 3000)",
    )
    parser.add_argument(
        "--propagation-delay",
        type=float,
        help="seconds from the slice's change to the data plane's",
    )
    parser.add_argument("--grace", type=int, default=defaults.grace_seconds)
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument(
        "--sleep-seconds",
        type=float,
        help="the sleep-15 recipe's sleep (default: half the grace, at most 15)",
    )
    parser.add_argument(
        "--native", action="store_true", help="proxy and agent as native sidecars (KEP-753)"
    )
    parser.add_argument(
        "--network",
        default=defaults.network,
        help="netns: each pod in its own network namespace on a bridge (root, iproute2); "
        "loopback: pods as 127.0.0.x; auto: netns where possible",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--picture", type=Path, default=Path("out/drill-timeline.svg"), help="timeline (SVG)"
    )


#: Flags that override a scenario's values: flag's dest -> DrillParams field.
_OVERRIDES = {
    "rate": "rate_per_second",
    "lead_seconds": "lead_seconds",
    "tail_seconds": "tail_seconds",
    "duration": "duration_seconds",
    "latency_ms": "latency_ms",
    "propagation_delay": "propagation_delay_seconds",
}


def params_from(args: argparse.Namespace) -> tuple[DrillParams, list[Recipe]]:
    """Validated parameters; ConfigError names the flag, the value and what was expected."""
    recipes = _recipes(args.recipes)
    if args.scenario not in SCENARIOS:
        _refuse("--scenario", args.scenario, f"one of {', '.join(SCENARIOS)}")
    preset = replace(DrillParams(), **SCENARIOS[args.scenario].values, scenario=args.scenario)
    given = {field: getattr(args, dest) for dest, field in _OVERRIDES.items()}
    base = replace(preset, **{k: v for k, v in given.items() if v is not None})
    routings = _routings(args)
    if args.replicas < 2:
        _refuse("--replicas", args.replicas, "at least 2 (traffic needs somewhere to go)")
    sleep_seconds = args.sleep_seconds
    if sleep_seconds is None:
        sleep_seconds = float(fitting_sleep_seconds(args.grace))
    for flag, value in (
        ("--lead-seconds", base.lead_seconds),
        ("--tail-seconds", base.tail_seconds),
        ("--duration", base.duration_seconds),
        ("--propagation-delay", base.propagation_delay_seconds),
        ("--sleep-seconds", sleep_seconds),
    ):
        if value < 0:
            _refuse(flag, value, "0 or more seconds")
    if base.rate_per_second <= 0:
        _refuse("--rate", base.rate_per_second, "a positive number of requests/s")
    if args.grace < 1:
        _refuse("--grace", args.grace, "at least 1 second (B1)")
    low, high = base.latency_ms
    if not 0 <= low <= high:
        _refuse("--latency-ms", f"{low} {high}", "LOW HIGH with 0 <= LOW <= HIGH")
    if sleep_seconds > args.grace:
        _refuse("--sleep-seconds", sleep_seconds, f"at most the grace, {args.grace} s (B17)")
    params = replace(
        base,
        latency_ms=(low, high),
        grace_seconds=args.grace,
        replicas=args.replicas,
        sleep_seconds=sleep_seconds,
        native=args.native,
        routings=routings,
        registry_refresh_seconds=args.registry_refresh,
        lease_ttl_seconds=args.lease_ttl,
        network=_network(args.network),
    )
    return params, recipes


def _recipes(value: str) -> list[Recipe]:
    """`--recipes`, checked, in the drill's order."""
    recipes = [r.strip() for r in value.split(",") if r.strip()]
    if not recipes or any(r not in RECIPES for r in recipes):
        _refuse("--recipes", value, f"a comma-separated list of {', '.join(RECIPES)}")
    return [r for r in RECIPES if r in recipes]


def _routings(args: argparse.Namespace) -> tuple[Routing, ...]:
    """`--routing` and the registry's knobs, checked; the routings in their usual order."""
    routings = [r.strip() for r in args.routing.split(",") if r.strip()]
    if not routings or any(r not in ROUTINGS for r in routings):
        _refuse("--routing", args.routing, f"a comma-separated list of {', '.join(ROUTINGS)}")
    if args.registry_refresh <= 0:
        _refuse("--registry-refresh", args.registry_refresh, "a positive number of seconds")
    if args.lease_ttl < 2:
        _refuse("--lease-ttl", args.lease_ttl, "at least 2 seconds (etcd's minimum lease)")
    return tuple(r for r in ROUTINGS if r in routings)


def _network(value: str) -> NetworkMode:
    """`--network`, checked: netns only where it is possible."""
    if value not in NETWORK_MODES:
        _refuse("--network", value, f"one of {', '.join(NETWORK_MODES)}")
    if value == "netns":
        from sidecar.drill.network import netns_unavailable  # noqa: PLC0415 - the drill's only

        if (why_not := netns_unavailable()) is not None:
            _refuse("--network", value, f"auto or loopback here ({why_not})")
    return value


def _refuse(flag: str, value: object, expected: str) -> NoReturn:
    raise ConfigError(f"{flag}: expected {expected}, got {value!r}")
