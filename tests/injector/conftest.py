"""The webhook served over real TLS on loopback, with a client that trusts only the test CA."""

from __future__ import annotations

import copy
import io
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.injector.certs import Issued, dns_names, issue
from sidecar.injector.server import Webhook
from sidecar.injector.tls import ServingCertificate

Planner = Callable[[Mapping[str, Any], str], Awaitable[Any]]

#: The name the client asks for (SNI and verification), as the API server does.
SERVICE_HOST = "shutdown-coordinator-injector.shutdown-coordinator-system.svc"


@dataclass(frozen=True)
class StandIn:
    """A planner's answer, as sidecar.model.injection.Injection carries it."""

    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None


async def stand_in_plan(pod: Mapping[str, Any], namespace: str, *, dry_run: bool = True) -> StandIn:
    """Adds one container and a marker annotation, like the real planner in miniature."""
    if pod.get("spec", {}).get("hostNetwork"):
        return StandIn(refused="hostNetwork pods share the node's ports")
    if pod.get("metadata", {}).get("annotations", {}).get("test/injected"):
        return StandIn()
    ops: list[dict[str, Any]] = []
    if "annotations" not in pod.get("metadata", {}):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops.append({"op": "add", "path": "/metadata/annotations/test~1injected", "value": namespace})
    ops.append({"op": "add", "path": "/spec/containers/-", "value": {"name": "agent"}})
    return StandIn(ops, ["no Service selects this pod " + "x" * 200])


def write_pair(folder: Path, issued: Issued) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = folder / "tls.crt", folder / "tls.key", folder / "ca.crt"
    for path, data in zip(files, (issued.cert_pem, issued.key_pem, issued.ca_pem), strict=True):
        path.write_bytes(data)
    return files


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


@dataclass
class Served:
    webhook: Webhook
    session: aiohttp.ClientSession
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_ssl: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.client_ssl = client_context(self.ca_file)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.webhook.port}"

    async def post(self, body: bytes, path: str = "/mutate") -> tuple[int, Any]:
        async with self.session.post(
            self.url + path,
            data=io.BytesIO(body),
            headers={"Content-Type": "application/json"},
            ssl=self.client_ssl,
            server_hostname=SERVICE_HOST,
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(
            self.url + path, ssl=self.client_ssl, server_hostname=SERVICE_HOST
        ) as response:
            return response.status, await response.text()


@pytest.fixture(scope="session")
def issued() -> Issued:
    return issue(dns_names("shutdown-coordinator-injector", "shutdown-coordinator-system"))


@pytest.fixture
def plan() -> Planner:
    return stand_in_plan


@pytest.fixture
async def served(tmp_path: Path, issued: Issued, plan: Planner) -> AsyncIterator[Served]:
    cert, key, ca = write_pair(tmp_path / "tls", issued)
    webhook = Webhook(plan, ServingCertificate(cert, key), host="127.0.0.1", port=0)
    await webhook.start()
    async with aiohttp.ClientSession() as session:
        yield Served(webhook, session, ca, cert, key)
    await webhook.stop()


def review(
    pod: Mapping[str, Any] | None,
    *,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    operation: str = "CREATE",
    namespace: str = "shop",
    resource: str = "pods",
) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it for a pod."""
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": resource},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": resource},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "2c1c1d5e-6f2b-4c36-9a0a-5d0b5c6f2b7c",
            "groups": ["system:serviceaccounts", "system:authenticated"],
        },
        "object": copy.deepcopy(pod) if pod is not None else None,
        "oldObject": None,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


PLAIN_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "web-7d9f8b-", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {
        "containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]}],
        "terminationGracePeriodSeconds": 30,
    },
}
