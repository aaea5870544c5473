"""The agent's memory budget depends on what it imports before the first hook."""

from __future__ import annotations

import subprocess
import sys


def test_starting_the_agent_does_not_import_the_kubernetes_client() -> None:
    probe = (
        "import sys, sidecar.cli, sidecar.agent.runtime, sidecar.adapters.kube; "
        "print('kubernetes_asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_a_pod_without_registries_does_not_import_the_registry_modules() -> None:
    lazy = (
        "sidecar.adapters.http_action",
        "sidecar.adapters.registries",
        "sidecar.shutdown.registries",
    )
    probe = (
        "import sys, sidecar.cli, sidecar.agent.runtime; "
        f"print(sorted(m for m in {lazy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_agent_command_does_not_import_the_injector_or_its_crypto() -> None:
    probe = (
        "import sys; from sidecar import cli; cli._parser('agent'); "
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('sidecar.') "
        "else m.split('.')[0] for m in sys.modules} & "
        "{'cryptography', 'ruamel', 'sidecar.injector', 'sidecar.drill', 'jsonpatch'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
