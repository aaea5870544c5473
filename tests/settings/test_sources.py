"""A value is trimmed and checked the same way wherever it comes from, and its source named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import settings
from sidecar.errors import ConfigError

TOKEN = "0123456789abcdef0123"
APP = {"containers": [{"name": "app"}]}
MINIMAL = {**APP, "server": {"token": TOKEN}}


def refused(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings.from_mapping(data, env or {})
    return str(caught.value).splitlines()


@pytest.mark.parametrize("written", [f"{TOKEN}\n", f"{TOKEN}\r\n", f"  {TOKEN}\t\n"])
def test_the_environment_token_is_trimmed_as_the_file_token_is(
    tmp_path: Path, written: str
) -> None:
    from_env = settings.from_mapping(APP, {"SHUTDOWN_COORDINATOR_TOKEN": written})
    token_file = tmp_path / "token"
    token_file.write_text(written)
    from_file = settings.from_mapping({**APP, "server": {"token_file": str(token_file)}}, {})
    assert from_env.server.token == from_file.server.token == TOKEN
    assert isinstance(from_env.server.token, settings.Secret)


@pytest.mark.parametrize(
    ("token", "what"),
    [
        ("0123456789\nabcdef", "a line break at character 11"),
        ("0123456789 abcdef", "a space at character 11"),
        ("0123456789\tabcdef", "a tab at character 11"),
        ("0123456789abcdef\x00", "a control character at character 17"),
        ("0123456789abcdeé", "a non-ASCII character at character 16"),
    ],
)
def test_a_token_no_http_header_can_carry_is_refused_naming_its_source_not_its_value(
    tmp_path: Path, token: str, what: str
) -> None:
    expected = f"expected visible ASCII characters only (an HTTP header value), got {what}"
    lines = refused(APP, {"SHUTDOWN_COORDINATOR_TOKEN": token})
    assert lines == [f"SHUTDOWN_COORDINATOR_TOKEN: {expected}"]
    assert refused({**APP, "server": {"token": token}}) == [f"server.token: {expected}"]
    token_file = tmp_path / "token"
    token_file.write_text(token)
    lines = refused({**APP, "server": {"token_file": str(token_file)}})
    assert lines == [f"server.token_file: {expected}"]
    assert "abcde" not in "".join(lines)


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_an_empty_token_file_is_named_and_said_empty(tmp_path: Path, content: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    lines = refused({**APP, "server": {"token_file": str(token_file)}})
    assert lines == [f"server.token_file: {str(token_file)!r} is empty: expected the hook token"]


def test_a_token_file_too_large_for_a_token_is_refused_unread(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x" * 100_000)
    lines = refused({**APP, "server": {"token_file": str(token_file)}})
    assert lines == [
        f"server.token_file: {str(token_file)!r}: expected at most 4096 bytes, got more"
    ]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "nan"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got 'nan'",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "inf"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got 'inf'",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "-inf"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got '-inf'",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "1e999"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got '1e999'",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "-1"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected at least 1.0, got -1",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "30s"},
            "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got '30s'",
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "9" * 400},
            (
                "TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, "
                "got an integer of 400 digits"
            ),
        ),
        (
            {"TERMINATION_GRACE_PERIOD_SECONDS": "9" * 5000},
            f"TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got '{'9' * 56}...",
        ),
        ({"POD_IPS": "10.0.0.1,nope"}, "POD_IPS[1]: expected an IP address, got 'nope'"),
        ({"POD_IP": "10.0.0.300"}, "POD_IP[0]: expected an IP address, got '10.0.0.300'"),
        ({"HOST_IP": "10.0.0.1\n"}, "HOST_IP: expected an IP address, got '10.0.0.1\\n'"),
        ({"HOST_IP": "10.0.0.1,10.0.0.2"}, "HOST_IP: expected an IP address, got '10.0.0.1,10.0."),
    ],
)
def test_a_bad_environment_variable_is_named_by_the_variable_not_the_key(
    env: dict[str, str], line: str
) -> None:
    for data in (MINIMAL, {**MINIMAL, "budget": {"grace_seconds": 20}}):
        lines = refused(data, env)
        assert len(lines) == 1, lines
        assert lines[0].startswith(line), lines
