"""The rotation verdict per slice conditions (D1-D13a), our endpoints, slice parsing errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sidecar.errors import MalformedAnswerError
from sidecar.model.rotation import (
    Endpoint,
    Rotation,
    Slice,
    parse_slice,
    pod_key,
    services_holding,
    verdict,
)

UID = "1111-aaaa"
KEY = pod_key(UID, ["10.0.0.7", "fd00::7"])


def ep(
    *,
    ready: bool = True,
    serving: bool = True,
    terminating: bool = False,
    uid: str | None = UID,
    addresses: tuple[str, ...] = ("10.0.0.7",),
) -> Endpoint:
    return Endpoint(addresses, uid, ready, serving, terminating)


OTHER = ep(uid="2222-bbbb", addresses=("10.0.0.8",))
SERVING = ep()
TERMINATING = ep(ready=False, serving=True, terminating=True)
PUBLISH_NOT_READY = ep(ready=True, serving=True, terminating=True)


def sl(service: str | None, *endpoints: Endpoint, name: str = "", family: str = "IPv4") -> Slice:
    return Slice(name or f"{service}-x", service, family, endpoints)


@pytest.mark.parametrize(
    ("cites", "slices", "services", "expected"),
    [
        ("D4: not yet processed", [sl("web", SERVING, OTHER)], {"web"}, Rotation.IN),
        (
            "D6.1: terminating is ready:false",
            [sl("web", TERMINATING, OTHER)],
            {"web"},
            Rotation.OUT,
        ),
        ("D6.3: endpoint removed", [sl("web", OTHER)], {"web"}, Rotation.OUT),
        ("D7: placeholder slice left", [sl("web")], {"web"}, Rotation.OUT),
        (
            "D4/D13a: publishNotReadyAddresses",
            [sl("web", PUBLISH_NOT_READY)],
            {"web"},
            Rotation.NEVER_UNREADY,
        ),
        ("D5: in no Service", [sl("other", OTHER)], set(), Rotation.NOT_LISTED),
        (
            "D9: a ready duplicate keeps it in",
            [sl("web", TERMINATING, name="a"), sl("web", SERVING, name="b")],
            {"web"},
            Rotation.IN,
        ),
        (
            "D9: both copies updated",
            [sl("web", TERMINATING, name="a"), sl("web", TERMINATING, name="b")],
            {"web"},
            Rotation.OUT,
        ),
        (
            "D2: one family updated, the other not yet",
            [sl("web", TERMINATING), sl("web", ep(addresses=("fd00::7",)), family="IPv6")],
            {"web"},
            Rotation.IN,
        ),
        (
            "D10: one Service of three still ready",
            [sl("a", TERMINATING), sl("b", TERMINATING), sl("c", SERVING)],
            {"a", "b", "c"},
            Rotation.IN,
        ),
        (
            "D10: every Service updated",
            [sl("a", TERMINATING), sl("b", OTHER), sl("c", TERMINATING)],
            {"a", "b", "c"},
            Rotation.OUT,
        ),
        (
            "D13a beside a normal Service: nothing more to wait for",
            [sl("a", TERMINATING), sl("b", PUBLISH_NOT_READY)],
            {"a", "b"},
            Rotation.NEVER_UNREADY,
        ),
        (
            "D1: a slice without the service label is ignored",
            [sl(None, SERVING), sl("web", TERMINATING)],
            {"web"},
            Rotation.OUT,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_verdict_follows_the_endpoint_conditions(
    cites: str, slices: list[Slice], services: set[str], expected: Rotation
) -> None:
    assert verdict(KEY, frozenset(services), slices).state is expected


def test_an_endpoint_without_target_ref_is_recognised_by_any_of_our_addresses() -> None:
    by_v6 = ep(uid=None, addresses=("FD00:0:0::7",))
    assert KEY.owns(by_v6)
    assert not KEY.owns(ep(uid=None, addresses=("10.0.0.9",)))


def test_a_target_ref_of_another_pod_wins_over_a_reused_address() -> None:
    assert not KEY.owns(ep(uid="3333-cccc", addresses=("10.0.0.7",)))


def test_services_holding_names_each_service_once_across_families_and_duplicates() -> None:
    slices = [
        sl("web", SERVING, name="w1"),
        sl("web", SERVING, name="w2"),
        sl("web", ep(addresses=("fd00::7",)), family="IPv6"),
        sl("admin", TERMINATING),
        sl("other", OTHER),
        sl(None, SERVING),
    ]
    assert services_holding(KEY, slices) == {"web", "admin"}


def test_verdict_reports_each_service_and_its_copies() -> None:
    result = verdict(KEY, frozenset({"web", "gone"}), [sl("web", TERMINATING), sl("web", SERVING)])
    assert [(s.service, s.state, s.copies) for s in result.services] == [
        ("gone", Rotation.OUT, 0),
        ("web", Rotation.IN, 2),
    ]
    assert not result.settled


def slice_doc(**endpoint: Any) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [endpoint],
    }


def test_parse_slice_reads_what_the_controller_writes_d3() -> None:
    doc = slice_doc(
        addresses=["10.0.0.7"],
        conditions={"ready": False, "serving": True, "terminating": True},
        targetRef={"kind": "Pod", "name": "p", "namespace": "ns", "uid": UID},
    )
    parsed = parse_slice(doc)
    assert parsed.service == "web"
    assert parsed.endpoints == (TERMINATING,)


def test_parse_slice_applies_the_api_defaults_for_absent_conditions() -> None:
    parsed = parse_slice(slice_doc(addresses=["10.0.0.7"]))
    (endpoint,) = parsed.endpoints
    assert (endpoint.ready, endpoint.serving, endpoint.terminating) == (True, True, False)
    assert endpoint.target_uid is None


def test_parse_slice_of_a_placeholder_has_no_endpoints_d7() -> None:
    doc = slice_doc()
    doc["endpoints"] = None
    assert parse_slice(doc).endpoints == ()


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            {"addresses": "10.0.0.7"},
            "slice web-abc: endpoints[0].addresses: expected a list of strings, got '10.0.0.7'",
        ),
        (
            {"addresses": ["10.0.0.7"], "conditions": {"ready": "yes"}},
            "slice web-abc: endpoints[0].conditions.ready: expected true or false, got 'yes'",
        ),
        (
            {"addresses": ["10.0.0.7"], "conditions": []},
            "slice web-abc: endpoints[0].conditions: expected an object, got list",
        ),
    ],
)
def test_parse_slice_names_what_is_malformed(endpoint: dict[str, Any], message: str) -> None:
    # The slice, the endpoint's index, the field, what was expected and what came.
    with pytest.raises(MalformedAnswerError, match=f"^{re.escape(message)}$"):
        parse_slice(slice_doc(**endpoint))
