"""The drill's flags: a bad value is a ConfigError naming the flag, the value, the expectation."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sidecar.drill.params import DrillParams, add_arguments, params_from
from sidecar.drill.presets import SCENARIOS
from sidecar.errors import ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recipes", "yolo"], "--recipes: expected a comma-separated list of no-hook, "),
        (["--scenario", "yolo"], "--scenario: expected one of steady-100, steady-1000, burst, "),
        (["--network", "host"], "--network: expected one of auto, netns, loopback, got 'host'"),
        (
            ["--replicas", "1"],
            "--replicas: expected at least 2 (traffic needs somewhere to go), got 1",
        ),
        (["--rate", "0"], "--rate: expected a positive number of requests/s, got 0.0"),
        (
            ["--sleep-seconds", "40", "--grace", "30"],
            "--sleep-seconds: expected at most the grace, 30 s (B17), got 40.0",
        ),
        (["--duration", "-1"], "--duration: expected 0 or more seconds, got -1.0"),
        (
            ["--propagation-delay", "-2"],
            "--propagation-delay: expected 0 or more seconds, got -2.0",
        ),
        (
            ["--grace", "0", "--sleep-seconds", "0"],
            "--grace: expected at least 1 second (B1), got 0",
        ),
        (
            ["--latency-ms", "300", "20"],
            "--latency-ms: expected LOW HIGH with 0 <= LOW <= HIGH, got '300 20'",
        ),
        (
            ["--routing", "service,dns"],
            "--routing: expected a comma-separated list of service, registry, got 'service,dns'",
        ),
        (
            ["--registry-refresh", "0"],
            "--registry-refresh: expected a positive number of seconds, got 0.0",
        ),
        (
            ["--lease-ttl", "1"],
            "--lease-ttl: expected at least 2 seconds (etcd's minimum lease), got 1",
        ),
    ],
)
def test_a_bad_flag_value_is_a_config_error_naming_the_flag_the_value_and_the_expectation(
    argv: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        params_from(parse(argv))
    assert str(raised.value).startswith(message)


def test_the_recipes_error_quotes_what_was_given_under_the_old_flag_name_too() -> None:
    with pytest.raises(ConfigError) as raised:
        params_from(parse(["--scenarios", "no-hook,yolo"]))
    assert str(raised.value).endswith("got 'no-hook,yolo'")


def test_good_flags_become_params_and_recipes_in_the_drill_order() -> None:
    params, recipes = params_from(
        parse(["--recipes", "coordinated,no-hook", "--rate", "50", "--latency-ms", "10", "20"])
    )
    assert recipes == ["no-hook", "coordinated"]
    assert params == DrillParams(rate_per_second=50, latency_ms=(10, 20))


@pytest.mark.parametrize(
    ("grace", "sleep"),
    [("30", 15.0), ("60", 15.0), ("10", 5.0), ("5", 2.0), ("1", 0.0)],
)
def test_the_sleep_recipe_defaults_to_the_fixed_sleep_that_fits_the_grace(
    grace: str, sleep: float
) -> None:
    # `drill --grace 10` used to be refused: the default 15 s sleep did not fit (B17).
    params, _ = params_from(parse(["--grace", grace]))
    assert params.sleep_seconds == sleep


def test_requests_of_one_to_three_seconds_are_a_latency_range() -> None:
    params, _ = params_from(parse(["--grace", "10", "--latency-ms", "1000", "3000"]))
    assert (params.latency_ms, params.grace_seconds, params.sleep_seconds) == ((1000, 3000), 10, 5)


def test_registry_routing_runs_after_the_service_with_its_own_knobs() -> None:
    argv = ["--routing", "registry,service", "--registry-refresh", "0.5", "--lease-ttl", "4"]
    params, _ = params_from(parse(argv))
    assert params.routings == ("service", "registry")
    assert (params.registry_refresh_seconds, params.lease_ttl_seconds) == (0.5, 4)
    assert params_from(parse([]))[0].routings == ("service",)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_is_its_values_and_flags_win_over_them(name: str) -> None:
    params, _ = params_from(parse(["--scenario", name]))
    assert params == dataclasses.replace(DrillParams(), **SCENARIOS[name].values, scenario=name)
    mine, _ = params_from(parse(["--scenario", name, "--rate", "7", "--propagation-delay", "1"]))
    assert (mine.rate_per_second, mine.propagation_delay_seconds) == (7, 1)
    assert mine.scenario == name


def test_the_scenarios_show_what_the_issue_asks_for() -> None:
    steady = {n: params_from(parse(["--scenario", n]))[0] for n in SCENARIOS}
    assert steady["steady-100"].rate_per_second == 100
    assert steady["steady-1000"].rate_per_second == 1000
    assert steady["burst"].burst_every_seconds == 1
    assert steady["idle"].idle_clients > 0
    assert steady["pinned"].pinned_clients > 1
    assert steady["pinned"].pinned_interval_seconds > 0
    assert steady["slow"].latency_ms == (1000, 3000)
    assert steady["steady-100"].propagation_delay_seconds == 2
    assert steady["propagation-6"].propagation_delay_seconds == 6
