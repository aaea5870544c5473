"""Every object manifests/ renders is valid for Kubernetes, by the API's own schemas.

kubernetes-validate ships the OpenAPI schemas of each Kubernetes release, so this runs offline.
Strict mode: a field the API does not know (a typo, a field at the wrong level) is an error, as
`kubectl apply --validate=strict` would make it. The oldest and the newest release checked are
stated here; native sidecars (an init container with `restartPolicy: Always`) need 1.29 or later.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.manifests import KUSTOMIZATIONS, apply_operation, identity, one, rendered

#: The Kubernetes releases the manifests are checked against: the oldest supported, the newest.
KUBERNETES_VERSIONS = ("1.30", "1.37")
#: Custom resources the schemas cannot know: cert-manager's, checked for their required fields.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Issuer"): ("spec",),
    ("cert-manager.io/v1", "Certificate"): ("spec.secretName", "spec.issuerRef.name"),
}


def validate(obj: dict[str, Any], version: str) -> None:
    """Raise with the failing path and message if the object is not valid for that release."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        raise AssertionError(f"{identity(obj)} on {version}: {where}: {e.message}") from None


def _field(obj: dict[str, Any], dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_validates(name: str, version: str) -> None:
    objects = rendered(name)
    assert objects
    for obj in objects:
        required = CUSTOM_KINDS.get((obj["apiVersion"], obj["kind"]))
        if required is not None:
            missing = [f for f in required if not _field(obj, f)]
            assert missing == [], f"{identity(obj)}: missing {missing}"
            continue
        validate(obj, version)


def test_the_newest_release_checked_is_the_newest_the_package_ships() -> None:
    newest = kubernetes_validate.utils.latest_version()
    assert KUBERNETES_VERSIONS[-1] == kubernetes_validate.utils.major_minor(newest)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "replicas"), "two", "is not of type 'integer'"),
        (("spec", "template", "spec", "containerz"), [], "Additional properties"),
        (("spec", "template", "spec", "containers", 0, "ports", 0, "protocol"), 6, "'string'"),
    ],
)
def test_a_broken_deployment_fails_validation(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    deployment = copy.deepcopy(one(rendered("base"), "Deployment"))
    node: Any = deployment
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(AssertionError, match=message):
        validate(deployment, KUBERNETES_VERSIONS[-1])


def test_an_unknown_webhook_field_fails_validation() -> None:
    webhook_configuration = copy.deepcopy(one(rendered("base"), "MutatingWebhookConfiguration"))
    webhook_configuration["webhooks"][0]["timeoutSecond"] = 5
    with pytest.raises(AssertionError, match="timeoutSecond"):
        validate(webhook_configuration, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize("example", ["examples/app", "examples/istio"])
def test_the_example_workload_injected_with_the_shipped_template_validates(example: str) -> None:
    injection = pytest.importorskip("sidecar.model.injection")
    settings = pytest.importorskip("sidecar.settings.injection")
    from sidecar.settings.reader import Reader  # noqa: PLC0415 - after the skip above

    template_text = one(rendered("base"), "ConfigMap")["data"]["template.yaml"]
    reader = Reader({})
    template = reader.read(settings.InjectionTemplate, yaml.safe_load(template_text), "template")
    assert reader.errors == {}
    deployment = one(rendered(example), "Deployment", "web")
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**copy.deepcopy(deployment["spec"]["template"]["metadata"]), "name": "web"},
        "spec": copy.deepcopy(deployment["spec"]["template"]["spec"]),
    }
    if example == "examples/istio":  # what Istio's webhook adds before ours is called again
        pod["spec"]["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"})

    result = injection.plan_patch(pod, template, namespace="shutdown-demo", token="t0ken")

    assert result.refused is None
    assert result.patch
    for operation in result.patch:
        apply_operation(pod, operation)
    for version in KUBERNETES_VERSIONS:
        validate(pod, version)
    # The injected pod, as a Deployment's template, is valid as well.
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["template"] = {"metadata": pod["metadata"], "spec": pod["spec"]}
    validate(deployment, KUBERNETES_VERSIONS[0])


def test_the_templates_commented_shared_settings_work_once_uncommented() -> None:
    """The shipped template's `agent_settings` example is accepted, and its pod validates."""
    from sidecar.model.injection import plan_patch  # noqa: PLC0415 - as the test above
    from sidecar.model.injection_settings import template_from  # noqa: PLC0415 - same

    text = one(rendered("base"), "ConfigMap")["data"]["template.yaml"]
    start = text.index("# agent_settings:")
    example = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    template = template_from({**yaml.safe_load(text), **yaml.safe_load(example)})
    assert template.secret_mounts == {"eureka-credentials": "/var/run/eureka"}
    deployment = one(rendered("examples/app"), "Deployment", "web")
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**copy.deepcopy(deployment["spec"]["template"]["metadata"]), "name": "web"},
        "spec": copy.deepcopy(deployment["spec"]["template"]["spec"]),
    }
    result = plan_patch(pod, template, namespace="shutdown-demo", token="t0ken")
    assert result.refused is None
    for operation in result.patch:
        apply_operation(pod, operation)
    settings = yaml.safe_load(pod["metadata"]["annotations"]["shutdown-coordinator.io/settings"])
    assert settings["registries"][0]["app"] == "{pod.labels[app]}"
    for version in KUBERNETES_VERSIONS:
        validate(pod, version)
