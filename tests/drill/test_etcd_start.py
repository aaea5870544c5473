"""The drill's etcd never outlives a start that failed or was cancelled (a real etcd)."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING

import pytest

from sidecar.drill import etcd
from sidecar.drill.etcd import EtcdServer

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd")


async def test_an_etcd_whose_port_never_opens_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_serves(*_args: object, **_kwargs: object) -> None:
        raise TimeoutError

    monkeypatch.setattr(etcd, "wait_for_port", never_serves)
    server = EtcdServer(tmp_path)
    with pytest.raises(TimeoutError):
        await server.start()
    assert server.proc is not None
    assert server.proc.process.returncode is not None


async def test_an_etcd_start_cancelled_while_waiting_stops_etcd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = asyncio.Event()

    async def waits_forever(*_args: object, **_kwargs: object) -> None:
        waiting.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(etcd, "wait_for_port", waits_forever)
    server = EtcdServer(tmp_path)
    starting = asyncio.create_task(server.start())
    await asyncio.wait_for(waiting.wait(), 10)
    assert server.proc is not None
    assert server.proc.process.returncode is None  # etcd was running when the start was cancelled
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert server.proc.process.returncode is not None


async def test_an_etcd_started_runs_until_stopped(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path)
    await server.start()
    try:
        assert server.proc is not None
        assert server.proc.process.returncode is None
    finally:
        await server.stop()
    assert server.proc.process.returncode is not None
