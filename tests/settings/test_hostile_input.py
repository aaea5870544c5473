"""Hostile settings files: each is one short line naming its source, never a traceback or a hang."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar import settings
from sidecar.errors import ConfigError
from sidecar.settings.loader import ERRORS_MAX, LINE_MAX_CHARS

BASE = "containers: [{name: app}]\nserver: {allow_unauthenticated: true}\n"


def refused(tmp_path: Path, text: str | bytes) -> list[str]:
    """The lines of the one ConfigError that a settings file of `text` gets."""
    path = tmp_path / "s.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        settings.load(str(path), {})
    lines = str(caught.value).splitlines()
    assert 1 <= len(lines) <= ERRORS_MAX + 1
    assert all(len(line) <= LINE_MAX_CHARS for line in lines), lines
    return lines


def laughs(levels: int) -> str:
    """The "billion laughs": each anchor a list of nine aliases of the one before."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            BASE + f"budget: {{grace_seconds: {'9' * 400}}}\n",
            "budget.grace_seconds: expected a number of seconds, got an integer of 400 digits",
        ),
        (
            BASE + f"phases: {{drain_max_seconds: -{'9' * 400}}}\n",
            "phases.drain_max_seconds: expected a number of seconds, got an integer of 400 digits",
        ),
        (
            (
                "containers: [{name: app}]\n"
                f"server: {{allow_unauthenticated: true, port: {'9' * 400}}}\n"
            ),
            "server.port: expected a TCP port from 1 to 65535, got an integer of 400 digits",
        ),
        (
            # Hexadecimal has no conversion limit: 15 992 bits, more digits than repr may print.
            (
                "containers: [{name: app}]\n"
                f"server: {{allow_unauthenticated: true, port: 0x{'f' * 3998}}}\n"
            ),
            "server.port: expected a TCP port from 1 to 65535, got an integer of 4815 digits",
        ),
        (
            (
                "containers: [{name: app}]\n"
                f"server: {{allow_unauthenticated: true, port: {'9' * 5000}}}\n"
            ),
            (
                "settings file {path}: line 2: server.port: "
                "expected a number of at most 4000 characters, got 5000"
            ),
        ),
    ],
)
def test_a_huge_integer_is_refused_naming_its_key(tmp_path: Path, text: str, line: str) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    assert refused(tmp_path, text) == [line.format(path=path)]


def test_yaml_nested_far_deeper_than_the_schema_is_refused_naming_the_line(
    tmp_path: Path,
) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    text = BASE + "pod: {ips: " + "[" * 5000 + "]" * 5000 + "}\n"
    assert refused(tmp_path, text) == [
        (
            f"settings file {path}: line 3: pod.ips[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
            "[0][0][0][0][0][0][0][0][0][0][0][0][0][0]: expected at most 32 levels of nesting"
        )
    ]


def test_a_settings_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    assert refused(tmp_path, b"containers: [{name: \xff}]\n") == [
        f"settings file {path}: expected UTF-8 text, got byte 0xff at line 1, column 21"
    ]


def test_a_token_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"0123456789abcdef\xfe\n")
    lines = refused(tmp_path, f"containers: [{{name: app}}]\nserver: {{token_file: {token}}}\n")
    assert lines == [
        (
            f"server.token_file: {str(token)!r}: expected UTF-8 text, got byte 0xfe at line 1, "
            "column 17"
        )
    ]


@pytest.mark.parametrize("levels", [3, 9])
@pytest.mark.parametrize("where", ["budget: {grace_seconds: *a%d}", "containers: *a%d"])
def test_yaml_aliases_are_refused_before_anything_expands(
    tmp_path: Path, levels: int, where: str
) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    text = laughs(levels) + BASE.replace("containers: [{name: app}]\n", "") + where % levels + "\n"
    assert refused(tmp_path, text) == [
        (
            f"settings file {path}: line 1: a0: expected no YAML anchors or aliases "
            "(write each value out), got &a0"
        )
    ]


def test_a_lone_alias_is_refused_naming_its_key(tmp_path: Path) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    assert refused(tmp_path, BASE + "budget: {grace_seconds: *nowhere}\n") == [
        (
            f"settings file {path}: line 3: budget.grace_seconds: expected no YAML anchors or "
            "aliases (write each value out), got *nowhere"
        )
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            BASE + "phases: {quiet_window_seconds: 1, quiet_window_seconds: 5}\n",
            "line 3: phases.quiet_window_seconds: given twice (first on line 3)",
        ),
        (
            "server: {port: 15121}\n" + BASE,
            "line 3: server: given twice (first on line 1)",
        ),
        (
            BASE + "phases:\n  quiet_window_seconds: 1\n  'quiet_window_seconds': 5\n",
            "line 5: phases.quiet_window_seconds: given twice (first on line 4)",
        ),
        (
            (
                "containers:\n  - name: app\n    ports: [8080]\n    name: web\n"
                "server: {allow_unauthenticated: true}\n"
            ),
            "line 4: containers[0].name: given twice (first on line 2)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_the_key_and_the_line(
    tmp_path: Path, text: str, line: str
) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    assert refused(tmp_path, text) == [f"settings file {path}: {line}"]


def test_a_file_larger_than_a_config_map_is_refused_unread(tmp_path: Path) -> None:
    path = repr(str(tmp_path / "s.yaml"))
    text = BASE + ("# padding\n" * 110_000)
    assert refused(tmp_path, text) == [
        f"settings file {path}: expected at most 1048576 bytes (a ConfigMap's limit), got more"
    ]


def test_a_json_body_nested_deeper_than_json_can_parse_is_refused_naming_the_key(
    tmp_path: Path,
) -> None:
    body = "[" * 100_000
    text = BASE + f"offline_calls: [{{url: 'http://x/off', body: {json.dumps(body)}}}]\n"
    assert refused(tmp_path, text) == [
        (
            "offline_calls[0]: expected a JSON body with placeholders inside strings, "
            f"got '{'[' * 56}..."
        )
    ]


def test_thousands_of_bad_values_are_counted_not_all_printed(tmp_path: Path) -> None:
    ports = ", ".join(["0"] * 5000)
    lines = refused(tmp_path, f"containers: [{{name: app, ports: [{ports}]}}]\n")
    assert lines[0] == "containers[0].ports[0]: expected a TCP port from 1 to 65535, got 0"
    assert lines[-1] == f"... and {5001 - ERRORS_MAX} more errors"
