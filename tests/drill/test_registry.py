"""Registry routing against real etcd: registrars keep live apps' keys, callers honour overrides."""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import TYPE_CHECKING

import pytest

from sidecar.drill.etcd import Gateway, encode
from sidecar.drill.procs import spawn
from sidecar.drill.registry import (
    DISABLED,
    RegistryRouting,
    Replica,
    key_of,
    override_of,
    routable,
    value_of,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sidecar.drill.procs import Proc

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make servers)")

TTL_SECONDS = 2
A, B = key_of("127.0.0.10", 8001), key_of("127.0.0.11", 8002)


def test_callers_skip_a_provider_only_when_its_own_override_disables_it() -> None:
    entries = {A: value_of("web-1", "127.0.0.10", 8001), B: value_of("web-2", "127.0.0.11", 8002)}
    assert routable(entries) == {A, B}
    assert routable({**entries, override_of(A): DISABLED}) == {B}
    assert routable({**entries, override_of(A): '{"disabled": false}'}) == {A, B}
    assert routable({**entries, override_of(A): "down"}) == {A, B}  # not an override they know
    assert routable({override_of(A): DISABLED}) == frozenset()


async def _app(folder: Path, name: str, lifetime_seconds: float) -> Proc:
    """A stand-in app that lives `lifetime_seconds`, then exits by itself."""
    code = f"import time; time.sleep({lifetime_seconds})"
    return await spawn(name, [sys.executable, "-c", code], folder)


@pytest.fixture
async def apps(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[list[Proc]]:
    """web-1 lives 3 s unless the test says otherwise; web-2 outlives the test."""
    first = getattr(request, "param", 3)
    procs = [await _app(tmp_path, "web-1", first), await _app(tmp_path, "web-2", 60)]
    yield procs
    for proc in procs:
        await proc.stop()


@pytest.fixture
async def routing(tmp_path: Path, apps: list[Proc]) -> AsyncIterator[RegistryRouting]:
    """etcd with both apps registered, callers reading every 0.2 s, a watch on web-1's key."""
    registry = RegistryRouting(tmp_path, refresh_seconds=0.2, ttl_seconds=TTL_SECONDS)
    replicas = [
        Replica("web-1", "127.0.0.10", 8001, apps[0]),
        Replica("web-2", "127.0.0.11", 8002, apps[1]),
    ]
    await registry.start(replicas, watched=replicas[0])
    yield registry
    await registry.stop()


def _gateway(routing: RegistryRouting) -> Gateway:
    session = routing._session
    assert session is not None
    return Gateway(session, routing.server.url)


async def test_a_live_apps_keep_alive_outlasts_its_ttl_and_a_dead_apps_key_expires_with_it(
    routing: RegistryRouting, apps: list[Proc]
) -> None:
    assert routing.log is not None
    assert routing.consumer is not None
    started = asyncio.get_running_loop().time()
    assert routing.consumer.reads[-1][1] == {A, B}
    log, consumer = routing.log, routing.consumer
    await routing.gone_for_callers(since=started, timeout_seconds=TTL_SECONDS + 5)
    removed = log.removed_at(started)
    exited = apps[0].exited_at
    assert removed is not None
    assert exited is not None
    # Renewed every TTL/3 while it ran, so it expired between 2/3 of the TTL and the TTL after.
    assert TTL_SECONDS * 2 / 3 - 0.3 <= removed - exited <= TTL_SECONDS + 1
    # The live app's key has outlived its TTL: its registrar renewed the lease.
    assert removed - started > TTL_SECONDS
    assert await routing.present(B)
    assert consumer.reads[-1][1] == {B}
    left = consumer.left_at(A, started)
    assert left is not None
    # Both are when this process learned of the removal, by two channels: a caller's read can
    # see it a moment before the watch stream delivers it (seen: 0.35 ms), never a read's time.
    assert left >= removed - 0.05


async def test_an_override_takes_a_live_provider_out_of_rotation_and_outlives_its_keep_alive(
    routing: RegistryRouting, apps: list[Proc]
) -> None:
    assert routing.log is not None
    assert routing.consumer is not None
    start = asyncio.get_running_loop().time()
    await _gateway(routing).put(override_of(B), DISABLED)
    await routing.consumer.refresh()
    assert routing.consumer.reads[-1][1] <= {A}
    assert await routing.present(B)  # still registered: only the callers moved
    # The override has no lease: no keep-alive and no expiry touches it.
    assert await routing.present(override_of(B))
    assert routing.log.marked_down_at(start) is None  # the watch follows web-1 only


@pytest.mark.parametrize("apps", [60], indirect=True)
async def test_a_revoked_lease_is_granted_again_and_the_key_written_again_while_the_app_runs(
    routing: RegistryRouting,
) -> None:
    """Why mark-down is an override: removing a live app's registration does not last."""
    assert routing.log is not None
    gateway = _gateway(routing)
    start = asyncio.get_running_loop().time()
    answer = await gateway.call("/v3/kv/range", {"key": encode(A)})
    await gateway.call("/v3/lease/revoke", {"ID": answer["kvs"][0]["lease"]})
    log = routing.log
    async with asyncio.timeout(TTL_SECONDS + 2):
        await log.until(lambda: log.written_again_at(start) is not None)
    removed, written = log.removed_at(start), log.written_again_at(start)
    assert removed is not None
    assert written is not None
    assert written > removed
    assert await routing.present(A)
