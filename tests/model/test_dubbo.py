"""Dubbo's provider names: encoded as Java's URLEncoder does, decoded to host and port."""

from __future__ import annotations

import pytest

from sidecar.model.dubbo import (
    Provider,
    canonical_host,
    java_url_encode,
    override_url,
    parse_provider,
)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        (
            "dubbo://10.0.0.7:20880/a.B?x=1&y=2",
            "dubbo%3A%2F%2F10.0.0.7%3A20880%2Fa.B%3Fx%3D1%26y%3D2",
        ),
        ("a b~*", "a+b%7E*"),  # a space is '+', '~' escaped and '*' kept, as URLEncoder does
    ],
)
def test_names_are_encoded_as_java_does(text: str, encoded: str) -> None:
    assert java_url_encode(text) == encoded


def test_a_provider_name_decodes_to_its_host_port_and_interface() -> None:
    raw = java_url_encode("dubbo://10.0.0.7:20880/com.example.Order?group=g&version=1.0")
    parsed = parse_provider("/dubbo/com.example.Order", raw)
    assert parsed is not None
    provider, host, port = parsed
    assert (host, port, provider.interface, provider.raw) == (
        "10.0.0.7",
        20880,
        "com.example.Order",
        raw,
    )
    assert provider.path == f"/dubbo/com.example.Order/providers/{raw}"


@pytest.mark.parametrize("raw", ["not-a-url", "dubbo%3A%2F%2Fhost-without-port%2Fx", "%zz"])
def test_a_name_that_is_no_provider_url_is_none(raw: str) -> None:
    assert parse_provider("/dubbo/x", raw) is None


def test_the_override_disables_one_address_in_its_group_and_version() -> None:
    provider = Provider("/dubbo/a.B", "raw", "10.0.0.7:20880", "a.B", {"group": "g", "side": "x"})
    assert override_url(provider) == (
        "override://10.0.0.7:20880/a.B?category=configurators&disabled=true&dynamic=true&group=g"
    )


@pytest.mark.parametrize(
    ("host", "canonical"),
    [("10.0.0.7", "10.0.0.7"), ("[2001:DB8::1]", "2001:db8::1"), ("Node-A", "node-a")],
)
def test_hosts_compare_in_one_form(host: str, canonical: str) -> None:
    assert canonical_host(host) == canonical
