"""Every YAML example in docs/configuration.md loads, and its registries build for a pod."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.adapters.http_action import HttpClient, http_actions
from sidecar.adapters.registries import build_registries
from sidecar.model.http_action import identity_of
from sidecar.settings import from_mapping

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"
EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
#: What an example leaves out: the containers, the token, and this pod's identity.
POD: dict[str, Any] = {
    "containers": [{"name": "app", "ports": [8080]}],
    "server": {"allow_unauthenticated": True},
    "pod": {"name": "web-1", "namespace": "shop", "uid": "u-1", "ips": ["10.1.0.7"]},
}


def test_the_docs_have_an_example_per_registry_kind_and_per_action() -> None:
    kinds = {k for e in EXAMPLES for k in re.findall(r"kind: (\w+)", e)}
    assert kinds >= {"http", "consul", "etcd", "eureka", "nacos", "zookeeper"}
    assert any("offline_calls:" in e for e in EXAMPLES)
    assert any("config_cleanup:" in e for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=range(len(EXAMPLES)))
async def test_each_example_loads_and_builds(example: str, tmp_path: Path) -> None:
    data = yaml.safe_load(example)
    labels = tmp_path / "labels"
    labels.write_text('app="web"\n', encoding="utf-8")
    if "labels_file" in data.get("pod", {}):
        data["pod"] = {**data["pod"], "labels_file": str(labels)}
    if "token_file" in data.get("server", {}):
        token = tmp_path / "token"
        token.write_text("0123456789abcdef0123\n", encoding="utf-8")
        data["server"] = {**data["server"], "token_file": str(token)}
    loaded = from_mapping({**POD, **data, "pod": {**POD["pod"], **data.get("pod", {})}}, {})
    pod = identity_of(loaded.pod)
    client = HttpClient()
    try:
        built = build_registries(loaded.registries, pod, client)
        actions = http_actions(loaded.offline_calls, pod, client, "offline_calls")
        actions += http_actions(loaded.config_cleanup, pod, client, "config_cleanup")
        assert len(built) == len(loaded.registries)
        assert len(actions) == len(loaded.offline_calls) + len(loaded.config_cleanup)
    finally:
        await client.close()
