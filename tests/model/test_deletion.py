"""Reading a Pod: the deletion fields, and the grace a container's restart is given (KEP-2238)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.errors import MalformedAnswerError
from sidecar.model.deletion import RestartGrace, read_deletion


def _pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"uid": "u1", **metadata}, "spec": spec, "status": {"podIP": "10.0.0.7"}}


def test_a_restart_reads_the_pods_grace_and_each_liveness_probes_own() -> None:
    pod = _pod(
        {
            "terminationGracePeriodSeconds": 30,
            "initContainers": [
                {"name": "istio-proxy", "livenessProbe": {"terminationGracePeriodSeconds": 4}}
            ],
            "containers": [
                {"name": "web", "livenessProbe": {"terminationGracePeriodSeconds": 8}},
                {"name": "worker", "livenessProbe": {"httpGet": {"port": 8080}}},
                {"name": "batch"},
            ],
        }
    )
    deletion = read_deletion(pod)
    assert not deletion.deleting
    assert deletion.ips == ("10.0.0.7",)
    assert deletion.restart == RestartGrace(30.0, (("istio-proxy", 4.0), ("web", 8.0)))
    assert deletion.restart.seconds_for(frozenset({"web"})) == 8.0
    assert deletion.restart.seconds_for(frozenset({"worker"})) == 30.0
    assert deletion.restart.seconds_for(frozenset({"istio-proxy"})) == 4.0
    assert deletion.restart.seconds_for(frozenset()) == 4.0


def test_a_deletion_still_reads_its_own_grace_and_deadline() -> None:
    pod = _pod(
        {"terminationGracePeriodSeconds": 30},
        deletionTimestamp="2026-01-01T00:00:10Z",
        deletionGracePeriodSeconds=10,
    )
    deletion = read_deletion(pod)
    assert deletion.deleting
    assert deletion.grace_seconds == 10.0
    assert deletion.deadline_epoch == 1767225610.0
    assert deletion.restart.pod_seconds == 30.0


def test_a_pod_without_a_spec_knows_no_restart_grace() -> None:
    deletion = read_deletion({"metadata": {"uid": "u1"}})
    assert deletion.restart == RestartGrace()
    assert deletion.restart.seconds_for(frozenset({"web"})) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"terminationGracePeriodSeconds": "30"},
            "pod: spec.terminationGracePeriodSeconds: expected an integer, got '30'",
        ),
        (
            {
                "containers": [
                    {"name": "web", "livenessProbe": {"terminationGracePeriodSeconds": 1.5}}
                ]
            },
            (
                "pod: spec.containers[0].livenessProbe.terminationGracePeriodSeconds: "
                "expected an integer, got 1.5"
            ),
        ),
        (
            {"terminationGracePeriodSeconds": True},
            "pod: spec.terminationGracePeriodSeconds: expected an integer, got True",
        ),
    ],
)
def test_a_malformed_grace_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedAnswerError) as raised:
        read_deletion(_pod(spec))
    assert str(raised.value) == message
