"""The release plan: apps in groups (release_order's if given), the proxy last; inbound ports."""

from __future__ import annotations

from sidecar import settings
from sidecar.model.plan import inbound_ports, release_groups


def _settings(**extra: object) -> settings.Settings:
    data = {
        "containers": [
            {"name": "app", "ports": [8080]},
            {"name": "worker", "ports": [9000], "process_names": ["worker"]},
            {"name": "envoy", "role": "proxy", "ports": [15006]},
        ],
        "server": {"allow_unauthenticated": True},
        **extra,
    }
    return settings.from_mapping(data, {})


def test_apps_form_one_group_and_the_proxy_goes_last() -> None:
    groups = release_groups(_settings())
    assert [g.names for g in groups] == [("app", "worker"), ("envoy",)]
    assert [g.is_proxy for g in groups] == [False, True]
    assert groups[0].ports == {8080, 9000}
    assert groups[0].process_names == {"worker"}


def test_release_order_splits_apps_into_groups_before_the_proxy() -> None:
    groups = release_groups(_settings(release_order=[["worker"], ["app"]]))
    assert [g.names for g in groups] == [("worker",), ("app",), ("envoy",)]
    assert [g.index for g in groups] == [0, 1, 2]


def test_inbound_ports_are_every_containers_own_ports() -> None:
    assert inbound_ports(_settings()) == {8080, 9000, 15006}
