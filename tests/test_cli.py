"""The command line: what `check` prints, and the exit code and message of each kind of failure."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from sidecar.cli import EXIT_CONFIG, EXIT_OK, main
from sidecar.drill import main as drill_main
from sidecar.drill.procs import free_port, spawn, wait_for_port
from sidecar.errors import ConfigError

TWO_GROUPS = (
    "containers: [{name: app, ports: [8080]}, {name: envoy, role: proxy, ports: [15006]}]\n"
    "server: {token: '0123456789abcdef0123'}\n"
)


def test_check_prints_the_effective_plan_without_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(TWO_GROUPS)
    assert main(["check", "-c", str(path)]) == EXIT_OK
    output = capsys.readouterr().out
    assert "0123456789abcdef0123" not in output
    document = json.loads(output)
    assert document["server"]["token"] == "***"
    assert document["plan"] == [
        {"release": ["app"], "latest_seconds_after_first_hook": 24.0},
        {"release": ["envoy"], "latest_seconds_after_first_hook": 29.0},
    ]
    assert document["effective"] == {
        "budget": {"sigterm_reserve_seconds": 5.0, "answer_margin_seconds": 1.0},
        "capped": [],
    }


def test_check_prints_the_capped_values_the_plan_really_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        TWO_GROUPS + "budget: {grace_seconds: 30, sigterm_reserve_seconds: 30, "
        "answer_margin_seconds: 20}\n"
    )
    assert main(["check", "-c", str(path)]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    # The margin is at most a quarter of 30 s; the one reserve at most a fifth of the grace.
    assert document["effective"] == {
        "budget": {"sigterm_reserve_seconds": 6.0, "answer_margin_seconds": 7.5},
        "capped": [
            (
                "budget.sigterm_reserve_seconds: 30 configured, 6 used (each reserve is at most "
                "a fifth of the grace, and the first release never comes before half of it)"
            ),
            (
                "budget.answer_margin_seconds: 20 configured, 7.5 used "
                "(the margin is at most a quarter of the grace)"
            ),
        ],
    }
    assert document["budget"]["sigterm_reserve_seconds"] == 30.0
    assert document["plan"][0]["latest_seconds_after_first_hook"] == 16.5


def test_without_a_settings_file_check_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SHUTDOWN_COORDINATOR_CONFIG", raising=False)
    assert main(["check"]) == EXIT_CONFIG
    assert "invalid settings: no settings file given: pass -c FILE" in capsys.readouterr().err


def test_every_invalid_setting_is_printed_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("containers: [{name: App}]\nserver: {port: 15001, allow_unauthenticated: 1}\n")
    assert main(["check", "-c", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err.splitlines() == [
        "shutdown-coordinator: invalid settings:",
        "  containers[0].name: expected a container name (DNS label), got 'App'",
        "  server.port: expected a port outside Istio's 15000-15099, got 15001",
        "  server.allow_unauthenticated: expected true or false, got 1",
    ]


HOSTILE = {
    "a 400-digit seconds": TWO_GROUPS + f"budget: {{grace_seconds: {'9' * 400}}}\n",
    "a 5000-digit port": "containers: [{name: app}]\n" + f"server: {{port: {'9' * 5000}}}\n",
    "5000 levels of nesting": TWO_GROUPS + "pod: {ips: " + "[" * 5000 + "]" * 5000 + "}\n",
    "the billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + TWO_GROUPS
    + "budget: {grace_seconds: *i}\n",
    "a key twice": TWO_GROUPS + "phases: {quiet_window_seconds: 1, quiet_window_seconds: 5}\n",
    "a timestamp that is no date": TWO_GROUPS + "pod: {name: 2001-13-45}\n",
    "an explicit int tag on text": TWO_GROUPS + "server: {port: !!int nope}\n",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_check_refuses_a_hostile_file_in_one_line_naming_the_file_or_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["check", "-c", str(path)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert error.startswith("shutdown-coordinator: invalid settings: ")
    assert len(error.splitlines()) == 1
    assert len(error) < 500
    assert str(path) in error or error.split(": ")[2].split(".")[0] in {"budget", "server"}


def test_check_refuses_a_settings_file_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(TWO_GROUPS.encode() + b"# caf\xe9\n")
    assert main(["check", "-c", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err == (
        f"shutdown-coordinator: invalid settings: settings file {str(path)!r}: "
        "expected UTF-8 text, got byte 0xe9 at line 3, column 6\n"
    )


def test_a_bad_drill_parameter_exits_2_but_a_bug_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: object) -> str:
        raise ConfigError("--rate: expected a positive number of requests per second, got -1")

    monkeypatch.setattr(drill_main, "run", refuse)
    assert main(["drill"]) == EXIT_CONFIG
    assert "drill: --rate: expected a positive number" in capsys.readouterr().err

    def bug(args: object) -> str:
        raise ValueError("a bug, not a bad parameter")

    monkeypatch.setattr(drill_main, "run", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["drill"])


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


async def test_sigterm_with_no_hook_exits_after_the_linger_and_every_line_names_the_pod(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST"}
    }
    env.update(POD_NAME="web-1", POD_NAMESPACE="shop")
    path = tmp_path / "s.yaml"
    path.write_text(
        f"containers: [{{name: app}}]\nserver: {{port: {port}, allow_unauthenticated: true, "
        "idle_sigterm_linger_seconds: 0.3}\n"
    )
    agent = await spawn(
        "agent",
        [sys.executable, "-m", "sidecar", "agent", "-c", str(path), "--log-format", "json"],
        tmp_path,
        env,
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
    assert {(line["pod"], line["namespace"]) for line in agent.json_lines()} == {("web-1", "shop")}


def test_the_agent_refuses_a_template_this_pod_cannot_fill_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("POD_NAME", "KUBERNETES_SERVICE_HOST", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "s.yaml"
    path.write_text(
        "containers: [{name: app, ports: [8080]}]\n"
        f"server: {{token: '0123456789abcdef0123', host: 127.0.0.1, port: {free_port()}}}\n"
        "registries:\n"
        "  - kind: http\n"
        "    name: eureka\n"
        "    deregister: {url: 'http://127.0.0.1:1/apps/{pod.name}', method: DELETE}\n"
        "    verify: {url: 'http://127.0.0.1:1/apps/{pod.name}'}\n"
    )
    assert main(["agent", "-c", str(path)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert "invalid settings for this pod" in error
    assert "registries[0].deregister.url" in error
    assert "{pod.name}" in error
