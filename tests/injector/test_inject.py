"""`shutdown-coordinator inject`: workloads of every kind, a List, comments kept, idempotence."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.injector.inject import add_arguments, inject_text, run
from sidecar.settings.injection import InjectionTemplate

TOKEN = "0123456789abcdef-token"
T = InjectionTemplate(version="1.0")
P = "shutdown-coordinator.io"

DEPLOYMENT = """\
# the shop's web front
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep me
  namespace: shop
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: web:1  # pinned
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
"""


def documents(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def injected_pod_spec(document: dict[str, object], *path: str) -> dict[str, object]:
    node: object = document
    for key in path:
        assert isinstance(node, dict)
        node = node[key]
    assert isinstance(node, dict)
    return node


def test_a_deployment_and_a_cronjob_are_injected_the_service_passes_unchanged() -> None:
    warnings: list[str] = []
    out = inject_text(DEPLOYMENT, T, TOKEN, warn=warnings.append)
    deployment, service, cronjob = documents(out)
    template = injected_pod_spec(deployment, "spec", "template")
    containers = injected_pod_spec(template, "spec")["containers"]
    assert isinstance(containers, list)
    assert [c["name"] for c in containers] == ["web", "shutdown-coordinator"]
    assert containers[0]["lifecycle"]["preStop"]["httpGet"]["path"] == "/prestop/web"
    annotations = injected_pod_spec(template, "metadata", "annotations")
    assert annotations[f"{P}/injected"] == "1.0"
    assert service == documents(DEPLOYMENT)[1]
    job_pod = injected_pod_spec(cronjob, "spec", "jobTemplate", "spec", "template", "spec")
    assert isinstance(job_pod["containers"], list)
    assert job_pod["containers"][0]["lifecycle"]["preStop"]["httpGet"]["port"] == 15120
    assert warnings == []


def test_comments_and_key_order_are_kept() -> None:
    out = inject_text(DEPLOYMENT, T, TOKEN)
    assert out.startswith("# the shop's web front\napiVersion: apps/v1\nkind: Deployment\n")
    assert "name: web   # keep me" in out
    assert "image: web:1  # pinned" in out
    assert out.index("replicas: 2") < out.index("template:")


def test_injecting_the_output_again_changes_nothing() -> None:
    once = inject_text(DEPLOYMENT, T, TOKEN)
    assert inject_text(once, T, TOKEN) == once


def test_a_list_and_every_workload_kind_are_injected() -> None:
    pod_spec = {"containers": [{"name": "app", "image": "a"}]}
    template = {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec}
    items = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec},
        *(
            {"kind": kind, "metadata": {"name": kind.lower()}, "spec": {"template": template}}
            for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
        ),
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}},
    ]
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    (result,) = documents(inject_text(text, T, TOKEN))
    assert isinstance(result, dict)
    out_items = result["items"]
    assert isinstance(out_items, list)
    for item in out_items[:6]:
        spec = item["spec"] if item["kind"] == "Pod" else item["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["containers"]] == ["app", "shutdown-coordinator"]
    assert out_items[6] == items[6]


def test_a_refused_pod_passes_unchanged_with_a_warning() -> None:
    text = "kind: Pod\nmetadata: {name: h}\nspec: {hostNetwork: true, containers: [{name: a}]}\n"
    warnings: list[str] = []
    assert documents(inject_text(text, T, TOKEN, warn=warnings.append)) == documents(text)
    assert len(warnings) == 1
    assert warnings[0].startswith("document 1 (Pod h): not injected: hostNetwork")


def cli(tmp_path: Path, text: str, *extra: str) -> argparse.Namespace:
    (tmp_path / "in.yaml").write_text(text)
    (tmp_path / "token").write_text(TOKEN + "\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["-f", str(tmp_path / "in.yaml"), "--token-file", str(tmp_path / "token"), *extra]
    return parser.parse_args(argv)


def test_the_command_prints_the_result_and_warnings_go_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "kind: Pod\nmetadata: {name: p, annotations: {" + P + "/bogus: x}}\n"
    text += "spec: {containers: [{name: a}]}\n"
    assert run(cli(tmp_path, text, "--mode", "native", "--image", "sc:9")) == 0
    out, err = capsys.readouterr()
    (pod,) = documents(out)
    assert isinstance(pod, dict)
    assert pod["spec"]["initContainers"][0]["image"] == "sc:9"
    assert err == (
        f"shutdown-coordinator inject: document 1 (Pod p): annotation {P}/bogus skipped: "
        "unknown setting\n"
    )


def test_stdin_is_read_with_a_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = cli(tmp_path, "")
    args.filename = "-"
    stdin = io.TextIOWrapper(io.BytesIO(b"kind: Pod\nspec: {containers: [{name: a}]}\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run(args) == 0
    assert "/prestop/a" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "extra", "error"),
    [
        ("a: [1\n", (), "the input is no valid YAML: "),
        ("kind: Deployment\nmetadata: {name: w}\nspec: {}\n", (),
         "document 1 (Deployment w): spec.template: expected a pod template"),
        ("---\nkind: Service\n---\nkind: Pod\nspec: {containers: 3}\n", (),
         "document 2 (Pod ?): spec.containers: expected a list of containers"),
        ("kind: List\nitems: {}\n", (), "document 1 (List): items: expected a list"),
        ("kind: Pod\n", ("--template", "TEMPLATE"), "invalid template: port: expected"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_document_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    extra: tuple[str, ...],
    error: str,
) -> None:
    (tmp_path / "template.yaml").write_text("port: 15001\n")
    extra = tuple(str(tmp_path / "template.yaml") if e == "TEMPLATE" else e for e in extra)
    assert run(cli(tmp_path, text, *extra)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"shutdown-coordinator inject: {error}")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_a_missing_or_short_token_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHUTDOWN_COORDINATOR_TOKEN", raising=False)
    args = cli(tmp_path, "kind: Pod\n")
    args.token_file = None
    assert run(args) == 2
    assert "no hook token" in capsys.readouterr().err
    args = cli(tmp_path, "kind: Pod\n")
    (tmp_path / "token").write_text("short")
    assert run(args) == 2
    assert "expected at least 16 characters, got 5" in capsys.readouterr().err
