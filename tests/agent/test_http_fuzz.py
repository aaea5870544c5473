"""Fuzzing the HTTP surface over raw sockets: every request gets a well-formed answer or a close."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.agent.metrics import Metrics
from sidecar.agent.server import start_server
from sidecar.drill.procs import free_port
from sidecar.settings import TOKEN_HEADER
from sidecar.shutdown.coordinator import Coordinator
from tests.agent.rawhttp import exchange, status_of
from tests.shutdown.doubles import NoProcesses, RecordingProxy, ScriptedTraffic, pod_settings

TOKEN = "s3cret-token-0123456789"
#: Headers that change the framing of the exchange (a body that never comes, an upgrade): the
#: fuzzer sets Content-Length and Connection itself, so that every exchange ends.
_FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}


@dataclass
class Served:
    port: int
    coordinator: Coordinator


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    port = free_port()
    config = pod_settings(
        server={"token": TOKEN, "host": "127.0.0.1", "port": port}, budget={"grace_seconds": 8}
    )
    metrics = Metrics()
    coordinator = Coordinator(
        config,
        traffic=ScriptedTraffic(),
        processes=NoProcesses(),
        proxy=RecordingProxy(),
        listener=metrics,
    )
    runner = await start_server(config, coordinator, metrics, flush_seconds=1.0)
    yield Served(port, coordinator)
    await coordinator.close()
    await runner.cleanup()


# Mostly what the routes take, so that requests reach the handlers, not only the parser.
_methods = st.one_of(
    st.sampled_from([b"GET", b"POST"]),
    st.sampled_from([b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"]),
    st.binary(min_size=1, max_size=12),
)
_paths = st.builds(
    bytes.__add__,
    st.sampled_from(
        [
            b"/prestop/app",
            b"/prestop/envoy",
            b"/prestop/",
            b"/healthz",
            b"/readyz",
            b"/status",
            b"/metrics",
            b"/",
            b"",
        ]
    ),
    st.one_of(st.just(b""), st.binary(max_size=40)),
)
_token_values = st.one_of(
    st.binary(max_size=64),
    # obs-text: bytes 0x80-0xFF are allowed in a header value, and no token is made of them.
    st.binary(min_size=1, max_size=40).map(lambda b: bytes(x | 0x80 for x in b)),
    st.sampled_from(
        [TOKEN.encode() + b"\xff", b"\xff", TOKEN[:-1].encode(), TOKEN.upper().encode()]
    ),
)
_header_names = st.one_of(
    st.sampled_from([b"Host", b"Accept", b"User-Agent", b"Content-Type", TOKEN_HEADER.encode()]),
    st.binary(min_size=1, max_size=30),
).filter(lambda name: name.strip().lower() not in _FRAMING)
_headers = st.lists(st.tuples(_header_names, st.binary(max_size=80)), max_size=8)


def _frame(
    method: bytes, path: bytes, version: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    lines = [method + b" " + path + b" " + version, b"Host: agent"]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    """Anything in one write: mostly well framed, sometimes raw garbage ending a head."""
    if draw(st.integers(0, 9)) == 0:
        # Not blank: blank lines before a request are allowed, so the server would wait for it.
        garbage = draw(st.binary(min_size=1, max_size=200).filter(lambda b: b[:1] not in b"\r\n"))
        return garbage + b"\r\n\r\n"
    method, path, headers = draw(_methods), draw(_paths), draw(_headers)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"HTTX"]))
    if draw(st.integers(0, 3)) > 0:
        headers.append((TOKEN_HEADER.encode(), draw(_token_values)))
    return _frame(method, path, version, headers, draw(st.binary(max_size=200)))


@st.composite
def _hooks(draw: st.DrawFn) -> bytes:
    """A hook as the kubelet or curl sends it, with any container name and a wrong token."""
    method = draw(st.sampled_from([b"GET", b"POST"]))
    container = draw(st.one_of(st.sampled_from([b"app", b"envoy"]), st.binary(max_size=20)))
    headers = draw(_headers)
    token = (TOKEN_HEADER.encode(), draw(_token_values))
    headers.insert(draw(st.integers(0, len(headers))), token)
    return _frame(
        method, b"/prestop/" + container, b"HTTP/1.1", headers, draw(st.binary(max_size=50))
    )


async def _check(served: Served, request: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()  # the fixture outlives the example
    answer = await exchange(served.port, request, deadline_seconds=8.0)
    status = status_of(answer)  # asserts the answer, if any, starts with an HTTP status line
    assert status is None or 200 <= status < 500, answer[:300]
    assert not served.coordinator.status().started
    # A malformed request is a warning line at most: no error, no traceback in the log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    health = await exchange(
        served.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status_of(health) == 200


# One server for all examples is the point: it must survive every one of them.
_bounded = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_bounded
@given(request=_requests())
async def test_every_request_gets_a_well_formed_answer_or_a_close_and_starts_nothing(
    served: Served, request: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await _check(served, request, caplog)


@_bounded
@given(request=_hooks())
async def test_a_hook_with_any_wrong_token_gets_a_4xx_and_starts_nothing(
    served: Served, request: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await _check(served, request, caplog)
