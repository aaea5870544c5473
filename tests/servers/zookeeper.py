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
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_CLASSPATH = "/usr/share/java/zookeeper.jar"
#: How long the server may take to answer `ruok` (a warm JVM answers in under a second).
START_DEADLINE_SECONDS = 20.0
STOP_DEADLINE_SECONDS = 5.0
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _imok(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.settimeout(1)
        s.sendall(b"ruok")
        return s.recv(16) == b"imok"
    return False


class ZookeeperServer:
    """One standalone server on loopback; `stop` always ends it (resuming it first if paused)."""

    def __init__(self, command: list[str], port: int, log: Path) -> None:
        self.command = command
        self.port = port
        self.hosts = f"127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        #: How long the last start took, wall clock.
        self.start_seconds = 0.0

    def start(self) -> None:
        """Start it and wait until it answers `imok`, or fail the test by the deadline."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + START_DEADLINE_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            if _imok(self.port):
                self.start_seconds = time.monotonic() - started
                return
            time.sleep(POLL_SECONDS)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        pytest.fail(f"ZooKeeper did not answer imok within {START_DEADLINE_SECONDS} s: {tail}")

    def pause(self) -> None:
        """SIGSTOP: it keeps its sockets but answers nothing (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Terminate, wait with a deadline, kill if it is still there."""
        process, self.process = self.process, None
        if process is None:
            return
        if self.paused:
            process.send_signal(signal.SIGCONT)
            self.paused = False
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_DEADLINE_SECONDS)


@contextmanager
def running_zookeeper(tmp_path: Path) -> Iterator[ZookeeperServer]:
    """A started ZooKeeper with its data under `tmp_path`, stopped on exit; skips if missing."""
    port = _free_port()
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
