from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from sidecar.cli import EXIT_CONFIG, EXIT_OK, main
from sidecar.drill.procs import free_port, spawn, wait_for_port


def test_check_prints_the_effective_plan_without_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "containers: [{name: app, ports: [8080]}, {name: envoy, role: proxy, ports: [15006]}]\n"
        "server: {token: '0123456789abcdef0123'}\n"
    )
    assert main(["check", "-c", str(path)]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["server"]["token"] == "***"
    assert document["plan"] == [
        {"release": ["app"], "latest_seconds_after_first_hook": 24.0},
        {"release": ["envoy"], "latest_seconds_after_first_hook": 29.0},
    ]


def test_invalid_settings_exit_2_with_a_message_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("containers: [{name: app, ports: [99999]}]\n")
    assert main(["agent", "-c", str(path)]) == EXIT_CONFIG
    assert (
        "containers[0].ports[0]: expected a TCP port from 1 to 65535, got 99999"
        in capsys.readouterr().err
    )


async def test_sigterm_with_no_hook_exits_after_the_linger(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "s.yaml"
    path.write_text(
        f"containers: [{{name: app}}]\nserver: {{port: {port}, allow_unauthenticated: true, "
        "idle_sigterm_linger_seconds: 0.3}\n"
    )
    agent = await spawn(
        "agent",
        [sys.executable, "-m", "sidecar", "agent", "-c", str(path), "--log-format", "json"],
        tmp_path,
    )
    await wait_for_port("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    agent.signal(signal.SIGTERM)
    assert await agent.exited(5.0) == 0
    assert loop.time() - sent >= 0.3
    events = [line["event"] for line in agent.json_lines()]
    assert events[-2:] == ["sigterm_received", "agent_exiting"]
    assert agent.json_lines()[-1]["reason"] == "no_hook"
