"""The rendered manifests fit together: webhook to Service to pod, probes, TLS, RBAC, opt-in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests import MANIFESTS, one, rendered, selected

NAMESPACE = "shutdown-coordinator-system"
#: The injector's server paths (sidecar/injector/server.py) and its port (`--port`).
MUTATE_PATH = "/mutate"
PORT = 8443
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def _pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def _injector(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _pod_spec(objects)["containers"][0]
    return container


def _arg(container: dict[str, Any], flag: str) -> str:
    args: list[str] = container["args"]
    return args[args.index(flag) + 1]


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


def _webhooks(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [w for o in objects if o["kind"] in WEBHOOK_KINDS for w in o["webhooks"]]


@pytest.mark.parametrize(
    "overlay", ["overlays/default", "overlays/guarantee", "overlays/cert-manager"]
)
def test_every_webhook_reaches_the_injector_port_through_its_service(overlay: str) -> None:
    objects = rendered(overlay)
    deployment = one(objects, "Deployment")
    container = _injector(objects)
    assert _arg(container, "--port") == str(PORT)
    for webhook in _webhooks(objects):
        ref = webhook["clientConfig"]["service"]
        service = one(objects, "Service", ref["name"])
        assert service["metadata"]["namespace"] == ref["namespace"] == NAMESPACE
        assert selected(
            {"matchLabels": service["spec"]["selector"]},
            deployment["spec"]["template"]["metadata"]["labels"],
        )
        (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
        assert _port_number(container, port["targetPort"]) == PORT


@pytest.mark.parametrize("overlay", ["overlays/default", "overlays/guarantee"])
def test_webhooks_never_block_and_never_touch_kube_system_or_the_injector(overlay: str) -> None:
    webhooks = _webhooks(rendered(overlay))
    assert len(webhooks) == (2 if overlay == "overlays/guarantee" else 1)
    for webhook in webhooks:
        assert webhook["failurePolicy"] == "Ignore"
        assert webhook["timeoutSeconds"] <= 10
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["sideEffects"] in {"None", "NoneOnDryRun"}
        selector = webhook["namespaceSelector"]
        enabled = {"shutdown-coordinator.io/inject": "enabled"}
        for name in ("kube-system", NAMESPACE):
            labels = {**enabled, "kubernetes.io/metadata.name": name}
            assert not selected(selector, labels), f"{webhook['name']} selects {name}"
        assert selected(selector, {**enabled, "kubernetes.io/metadata.name": "shop"})
        assert not selected(selector, {"kubernetes.io/metadata.name": "shop"}), "not opt-in"


def test_the_mutating_webhook_injects_pods_at_creation_and_again_after_istio() -> None:
    (webhook,) = _webhooks(rendered("overlays/default"))
    assert webhook["clientConfig"]["service"]["path"] == MUTATE_PATH
    assert webhook["sideEffects"] == "NoneOnDryRun"  # it may create the token Secret
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert not selected(webhook["objectSelector"], {"shutdown-coordinator.io/inject": "disabled"})
    assert selected(webhook["objectSelector"], {})


def test_the_deletion_webhook_is_only_in_its_overlay_and_watches_pod_deletes() -> None:
    assert [o for o in rendered("overlays/default") if o["kind"] == WEBHOOK_KINDS[1]] == []
    webhook = one(rendered("overlays/guarantee"), WEBHOOK_KINDS[1])["webhooks"][0]
    assert webhook["rules"][0]["operations"] == ["DELETE"]
    assert webhook["rules"][0]["resources"] == ["pods"]
    assert webhook["clientConfig"]["service"]["path"] not in {MUTATE_PATH, "/healthz", "/readyz"}


def test_the_injector_runs_two_spread_replicas_kept_by_a_budget() -> None:
    objects = rendered("overlays/default")
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    budget = one(objects, "PodDisruptionBudget")
    assert selected(budget["spec"]["selector"], pod_labels)
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    anti = _pod_spec(objects)["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert selected(term["podAffinityTerm"]["labelSelector"], pod_labels)
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_the_injector_is_probed_over_https_and_runs_non_root_read_only() -> None:
    objects = rendered("overlays/default")
    container = _injector(objects)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert (get["scheme"], get["path"], _port_number(container, get["port"])) == (
            "HTTPS",
            path,
            PORT,
        )
    assert _pod_spec(objects)["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_the_injector_mounts_its_certificate_and_template_where_its_arguments_say() -> None:
    objects = rendered("overlays/default")
    spec = _pod_spec(objects)
    container = _injector(objects)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    def volume_of(path: str) -> tuple[dict[str, Any], str]:
        folder, _, key = path.rpartition("/")
        return volumes[mounts[folder]], key

    for flag, key in (("--cert", "tls.crt"), ("--key", "tls.key")):
        volume, file = volume_of(_arg(container, flag))
        assert volume["secret"]["secretName"] == "shutdown-coordinator-injector-tls"
        assert file == key
    volume, file = volume_of(_arg(container, "--template"))
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert file in config_map["data"]
    # The caBundle key `shutdown-coordinator certs --manifest` fills is in the base files.
    assert 'caBundle: ""' in (MANIFESTS / "base" / "mutating-webhook.yaml").read_text()


def test_cert_manager_issues_the_mounted_secret_and_injects_every_ca_bundle() -> None:
    objects = rendered("overlays/cert-manager")
    certificate = one(objects, "Certificate", "shutdown-coordinator-injector")
    secret = next(v for v in _pod_spec(objects)["volumes"] if "secret" in v)["secret"]
    assert certificate["spec"]["secretName"] == secret["secretName"]
    assert f"shutdown-coordinator-injector.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    configurations = [o for o in objects if o["kind"] in WEBHOOK_KINDS]
    assert len(configurations) == 2
    for configuration in configurations:
        annotation = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert annotation == f"{NAMESPACE}/{certificate['metadata']['name']}"
        assert certificate["metadata"]["namespace"] == NAMESPACE
        assert all("caBundle" not in w["clientConfig"] for w in configuration["webhooks"])


def test_the_injector_account_has_what_the_webhook_needs_and_no_wildcard() -> None:
    objects = rendered("overlays/guarantee")
    account = _pod_spec(objects)["serviceAccountName"]
    granted: set[tuple[str, str]] = set()
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
        role = one(objects, "ClusterRole", binding["roleRef"]["name"])
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            granted.update((r, v) for r in rule["resources"] for v in rule["verbs"])
    assert {("services", "list"), ("secrets", "get"), ("secrets", "create")} <= granted
    assert ("events", "create") in granted  # the deletion webhook's Warning at the cap
    assert ("secrets", "list") not in granted


@pytest.mark.parametrize("example", ["examples/app", "examples/istio"])
def test_the_example_opts_in_and_runs_as_the_agents_account(example: str) -> None:
    objects = rendered(example)
    namespace = one(objects, "Namespace")
    name = namespace["metadata"]["name"]
    (webhook,) = _webhooks(rendered("overlays/default"))
    labels = {**namespace["metadata"]["labels"], "kubernetes.io/metadata.name": name}
    assert selected(webhook["namespaceSelector"], labels)
    deployment = one(objects, "Deployment", "web")
    template = deployment["spec"]["template"]
    assert deployment["metadata"]["namespace"] == name
    assert selected(
        {"matchLabels": one(objects, "Service")["spec"]["selector"]}, template["metadata"]["labels"]
    )
    binding = one(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == name
    assert binding["subjects"][0]["name"] == template["spec"]["serviceAccountName"]
    assert "lifecycle" not in template["spec"]["containers"][0], "the injector adds the hook"
    istio = template["metadata"]["labels"].get("sidecar.istio.io/inject")
    assert istio == ("true" if example == "examples/istio" else None)
