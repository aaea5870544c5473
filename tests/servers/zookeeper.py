"""A real ZooKeeper on loopback: fresh data dir, a free port, a start bounded by a deadline, a stop.

`running_zookeeper(tmp_path)` starts one standalone server (`ZooKeeperServerMain` from Debian's
`zookeeper` package: `/usr/share/java/zookeeper.jar`, whose manifest names its dependencies, or
`$ZOOKEEPER_CLASSPATH`) and stops it on exit. The JVM starts in about half a second, so each test
gets its own server: the suite's leak guard counts a child process that outlives a test as leaked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers.process import ServerProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_CLASSPATH = "/usr/share/java/zookeeper.jar"
#: How long the server may take to answer `ruok` (a warm JVM answers in under a second).
START_DEADLINE_SECONDS = 20.0
#: How often `ruok` is asked while it starts (the only way to see an outside process ready).
POLL_SECONDS = 0.05
#: ZooKeeper's tick: sessions may last 2 to 20 ticks, so 1 s to 10 s here.
TICK_MILLISECONDS = 500


def zookeeper_command(port: int, data_dir: Path) -> list[str] | None:
    """The command that runs a standalone server, or None when Java or ZooKeeper is missing."""
    java = os.environ.get("JAVA") or shutil.which("java")
    classpath = os.environ.get("ZOOKEEPER_CLASSPATH", DEFAULT_CLASSPATH)
    if java is None or not Path(classpath.split(":")[0]).exists():
        return None
    return [
        java,
        "-Xmx96m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dzookeeper.admin.enableServer=false",  # else an HTTP admin server takes port 8080
        "-Dzookeeper.4lw.commands.whitelist=ruok",
        "-cp",
        classpath,
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        str(port),
        str(data_dir),
        str(TICK_MILLISECONDS),
    ]


def _imok(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.settimeout(1)
        s.sendall(b"ruok")
        return s.recv(16) == b"imok"
    return False


class ZookeeperServer(ServerProcess):
    """One standalone server on loopback."""

    name = "ZooKeeper"

    def __init__(self, command: list[str], port: int, log: Path) -> None:
        super().__init__(command, log)
        self.port = port
        self.hosts = f"127.0.0.1:{port}"

    def start(self) -> None:
        """Start it and wait until it answers `imok`, or fail the test by the deadline."""
        self.start_until(lambda: _imok(self.port), START_DEADLINE_SECONDS, POLL_SECONDS)


@contextmanager
def running_zookeeper(tmp_path: Path) -> Iterator[ZookeeperServer]:
    """A started ZooKeeper with its data under `tmp_path`, stopped on exit; skips if missing."""
    port = free_port()
    data_dir = tmp_path / "zookeeper-data"
    command = zookeeper_command(port, data_dir)
    if command is None:
        pytest.skip("Java or ZooKeeper is not installed (make test installs Debian's zookeeper)")
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ZookeeperServer(command, port, tmp_path / "zookeeper.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
