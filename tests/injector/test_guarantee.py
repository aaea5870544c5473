"""The deletion webhook end to end: the API stand-in's pods, the webhook over TLS, a real agent.

The test plays the deleting controller: it sends the API server's DELETE review for a pod the
stand-in holds, and deletes the pod in the stand-in only when the webhook allows it; the agent
is the real one (start_agent) with a generic HTTP registry fake to mark down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from sidecar.agent.runtime import Agent, start_agent, stop_agent
from sidecar.drill.control_plane import ControlPlane
from sidecar.drill.procs import free_port
from sidecar.injector.certs import Issued
from sidecar.injector.guarantee import ANNOTATION, Guarantee
from sidecar.injector.server import VALIDATE_DELETE_PATH, Webhook
from sidecar.injector.tls import ServingCertificate
from tests.agent.test_prepare import TOKEN, Registry, agent_settings
from tests.injector.conftest import Served, stand_in_plan, write_pair

NAMESPACE = "shop"


class StandInEvents:
    """Posts the webhook's Warning Events to the API stand-in, as the Kubernetes API would."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session, self._url = session, url

    async def post_pod_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        event = {
            "metadata": {"name": f"{name}.guarantee", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace, "uid": uid},
            "reason": reason,
            "message": message,
            "type": "Warning",
        }
        path = f"{self._url}/api/v1/namespaces/{namespace}/events"
        async with self._session.post(path, json=event) as answer:
            answer.raise_for_status()


@dataclass
class World:
    """The stand-in, the registry fake, the agent and the webhooks started by a test."""

    api: ControlPlane
    registry: Registry
    agent: Agent
    session: aiohttp.ClientSession
    tls: tuple[Path, Path, Path]
    webhooks: list[Webhook] = field(default_factory=list)

    async def webhook(self, **options: Any) -> Served:
        """A webhook whose deletion guard has these options (a real agent on loopback)."""
        options.setdefault("agent_port", self.agent.settings.server.port)
        options.setdefault("events", StandInEvents(self.session, self.api.url))
        guarantee = Guarantee(options.pop("token", TOKEN), **options)
        cert, key, ca = self.tls
        webhook = Webhook(
            stand_in_plan, ServingCertificate(cert, key), host="127.0.0.1", port=0,
            guarantee=guarantee,
        )  # fmt: skip
        await webhook.start()
        self.webhooks.append(webhook)
        return Served(webhook, self.session, ca, cert, key)

    def pod(
        self, name: str = "db-0", *, namespace: str = NAMESPACE, opted_in: bool = True
    ) -> dict[str, Any]:
        """A Running pod in the stand-in whose IP is the agent's address."""
        annotations = {ANNOTATION: "true"} if opted_in else {}
        metadata = {"name": name, "namespace": namespace, "annotations": annotations}
        self.api.create(
            "pods",
            {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": "db:1"}]}},
        )
        return self.api.patch_pod_status(
            namespace, name, {"phase": "Running", "podIP": "127.0.0.1"}
        )


@pytest.fixture
async def world(tmp_path: Path, issued: Issued) -> AsyncIterator[World]:
    api = ControlPlane()
    await api.start()
    registry = Registry()
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", registry.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    agent = await start_agent(agent_settings(f"http://127.0.0.1:{port}"))
    tls = write_pair(tmp_path / "tls", issued)
    async with aiohttp.ClientSession() as session:
        world = World(api, registry, agent, session, tls)
        try:
            yield world
        finally:
            for webhook in world.webhooks:
                await webhook.stop()
    await stop_agent(agent)
    await runner.cleanup()
    await api.stop()


def delete_review(
    pod: dict[str, Any] | None, *, uid: str = "d3l3te-0001", dry_run: bool = False, **request: Any
) -> bytes:
    """The AdmissionReview v1 the API server sends a validating webhook for a pod DELETE."""
    metadata = (pod or {}).get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    body: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", NAMESPACE),
        "operation": "DELETE",
        "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
        "object": None,
        "oldObject": pod,
        "dryRun": dry_run,
        "options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"},
        **request,
    }
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}
    return json.dumps(review).encode()


async def ask(served: Served, body: bytes) -> dict[str, Any]:
    """Send one review; the answer must be a well-formed AdmissionReview response."""
    status, answer = await served.post(body, VALIDATE_DELETE_PATH)
    assert isinstance(answer, dict), answer
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response: dict[str, Any] = answer["response"]
    assert isinstance(response["allowed"], bool)
    assert status == (400 if response.get("status", {}).get("code") == 400 else 200)
    for warning in response.get("warnings", []):
        assert len(warning) <= 120
    return response


def marked_down(world: World) -> int:
    return world.registry.calls.count(("PUT", "/apps/WEB/web-1/status?value=DOWN"))


async def test_a_delete_is_refused_until_the_agent_is_prepared_then_allowed(world: World) -> None:
    served = await world.webhook()
    pod = world.pod()
    world.registry.status = 503  # the registry refuses the mark-down for now
    for attempt in (1, 2):
        response = await ask(served, delete_review(pod, uid=f"refused-{attempt}"))
        assert response["uid"] == f"refused-{attempt}"
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        message = response["status"]["message"]
        assert f"pod {NAMESPACE}/db-0 is not prepared for deletion yet" in message
        assert "announce error" in message
        assert f"refusal {attempt}" in message
        # The controller's DELETE never reaches the stand-in while it is refused.
        stored = world.api.store.get("pods", NAMESPACE, "db-0")
        assert stored is not None
        assert "deletionTimestamp" not in stored["metadata"]
    world.registry.status = 200
    response = await ask(served, delete_review(pod, uid="allowed"))
    assert response == {"uid": "allowed", "allowed": True}
    deleted = world.api.delete_pod(NAMESPACE, "db-0")
    assert deleted["metadata"]["deletionTimestamp"]
    assert marked_down(world) == 3
    # Preparing released no hook and started no shutdown.
    assert not world.agent.coordinator.status().started
    assert world.api.events_for(NAMESPACE, "db-0") == []


async def test_the_cap_allows_the_deletion_and_posts_a_warning_event(world: World) -> None:
    served = await world.webhook(cap_refusals=2)
    pod = world.pod()
    world.registry.status = 503
    with capture_logs() as logs:
        answers = [await ask(served, delete_review(pod, uid=f"try-{i}")) for i in range(3)]
    assert [a["allowed"] for a in answers] == [False, False, True]
    assert answers[2]["warnings"][0].startswith(
        "shutdown-coordinator: deleted unprepared after its cap"
    )
    capped = [e for e in logs if e["event"] == "guarantee_cap_passed"]
    assert len(capped) == 1
    assert capped[0]["log_level"] == "warning"
    assert capped[0]["pod"] == "db-0"
    (event,) = world.api.events_for(NAMESPACE, "db-0")
    assert event["type"] == "Warning"
    assert event["reason"] == "DeletedUnprepared"
    assert "after 2 refusals" in event["message"]
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    # The count starts again for the pod's next life under the same name.
    assert (await ask(served, delete_review(pod, uid="again")))["allowed"] is False


async def test_the_time_cap_allows_at_once_when_it_has_passed(world: World) -> None:
    served = await world.webhook(cap_seconds=0)
    world.registry.status = 503
    response = await ask(served, delete_review(world.pod()))
    assert response["allowed"] is True
    assert "cap" in response["warnings"][0]
    assert len(world.api.events_for(NAMESPACE, "db-0")) == 1


async def test_a_pod_without_the_annotation_is_allowed_without_asking_its_agent(
    world: World,
) -> None:
    served = await world.webhook()
    response = await ask(served, delete_review(world.pod(opted_in=False), uid="plain"))
    assert response == {"uid": "plain", "allowed": True}
    assert world.registry.calls == []


@pytest.mark.parametrize("namespace", ["kube-system", "shutdown-coordinator-system"])
async def test_kube_system_and_the_injectors_namespace_are_never_held(
    world: World, namespace: str
) -> None:
    served = await world.webhook()
    world.registry.status = 503
    response = await ask(served, delete_review(world.pod(namespace=namespace)))
    assert response["allowed"] is True
    assert world.registry.calls == []


async def test_a_dry_run_does_not_call_the_agent(world: World) -> None:
    served = await world.webhook()
    world.registry.status = 503
    response = await ask(served, delete_review(world.pod(), dry_run=True))
    assert response["allowed"] is True
    assert "dry run" in response["warnings"][0]
    assert world.registry.calls == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [({"phase": "Pending"}, True), ({"phase": "Running", "podIP": "not-an-ip"}, True)],
)
async def test_a_pod_that_does_not_run_is_allowed(
    world: World, status: dict[str, str], outcome: bool
) -> None:
    served = await world.webhook()
    pod = world.pod()
    pod["status"] = status
    assert (await ask(served, delete_review(pod)))["allowed"] is outcome
    assert world.registry.calls == []


async def test_a_terminating_pod_is_allowed_again(world: World) -> None:
    served = await world.webhook()
    pod = world.pod()
    pod["metadata"]["deletionTimestamp"] = "2026-12-01T18:00:00Z"
    assert (await ask(served, delete_review(pod)))["allowed"] is True
    assert world.registry.calls == []


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"agent_port": 0}, "cannot be reached"),  # nothing listens: refused until the cap
        ({"token": "wrong"}, "HTTP 403"),
    ],
)
async def test_an_agent_that_cannot_say_keeps_the_pod_until_the_cap(
    world: World, options: dict[str, Any], says: str
) -> None:
    if options.get("agent_port") == 0:
        options["agent_port"] = free_port()
    served = await world.webhook(**options)
    response = await ask(served, delete_review(world.pod()))
    assert response["allowed"] is False
    assert says in response["status"]["message"]
    assert world.registry.calls == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"apiVersion": "admission.k8s.io/v1beta1"}).encode(), 400),
        (
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
            ).encode(),
            400,
        ),
        (delete_review(None), 200),  # no oldObject
        (delete_review({"metadata": "x", "status": 7}, name=5), 200),  # bent pod
        (delete_review({"metadata": {"annotations": {ANNOTATION: "true"}}, "status": 7}), 200),
        (delete_review({}, operation="CREATE"), 200),
        (delete_review({}, subResource="eviction"), 200),
    ],
)
async def test_malformed_reviews_get_well_formed_answers(
    world: World, body: bytes, code: int
) -> None:
    served = await world.webhook()
    response = await ask(served, body)
    assert response["allowed"] is True
    assert response.get("status", {}).get("code", 200) == code
    assert world.registry.calls == []


async def test_memory_is_bounded_and_the_oldest_pod_is_forgotten(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sidecar.injector.guarantee.REMEMBERED_PODS", 2)
    served = await world.webhook(agent_port=free_port(), cap_refusals=1)
    pods = [world.pod(f"db-{i}") for i in range(3)]
    for pod in pods:
        assert (await ask(served, delete_review(pod)))["allowed"] is False
    # db-0 was forgotten: its count starts again (refused); db-2 is at its cap (allowed).
    assert (await ask(served, delete_review(pods[0])))["allowed"] is False
    assert (await ask(served, delete_review(pods[2])))["allowed"] is True


async def test_a_webhook_without_a_guard_allows_every_delete(
    tmp_path: Path, issued: Issued
) -> None:
    cert, key, ca = write_pair(tmp_path / "tls", issued)
    webhook = Webhook(stand_in_plan, ServingCertificate(cert, key), host="127.0.0.1", port=0)
    await webhook.start()
    try:
        async with aiohttp.ClientSession() as session:
            served = Served(webhook, session, ca, cert, key)
            pod = {"metadata": {"name": "db-0", "annotations": {ANNOTATION: "true"}}}
            response = await ask(served, delete_review(pod, uid="unguarded"))
    finally:
        await webhook.stop()
    assert response == {"uid": "unguarded", "allowed": True}


async def test_an_answer_is_bounded_even_when_the_guard_hangs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = await world.webhook()
    hang = asyncio.Event()

    async def stuck(_: Any) -> Any:
        await hang.wait()

    monkeypatch.setattr(Guarantee, "answer", lambda _, review: stuck(review))
    monkeypatch.setattr("sidecar.injector.server.PLAN_TIMEOUT_SECONDS", 0.05)
    response = await ask(served, delete_review(world.pod()))
    assert response["allowed"] is True
    assert "no decision within 0.05 s" in response["warnings"][0]


async def test_the_token_is_the_namespaces_own_when_no_single_token_is_given(world: World) -> None:
    asked: list[str] = []

    async def token_of(namespace: str) -> str:
        asked.append(namespace)
        if namespace != NAMESPACE:
            raise LookupError(f"Secret {namespace}/shutdown-coordinator-token not found")
        return TOKEN

    served = await world.webhook(token=None, token_of=token_of)
    assert (await ask(served, delete_review(world.pod())))["allowed"] is True
    assert marked_down(world) == 1
    other = await ask(served, delete_review(world.pod("db-1", namespace="billing")))
    assert other["allowed"] is False
    assert (
        "no hook token: Secret billing/shutdown-coordinator-token not found"
        in (other["status"]["message"])
    )
    assert asked == [NAMESPACE, "billing"]
    assert marked_down(world) == 1  # the agent was not asked without a token
