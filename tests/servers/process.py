"""A real server the tests run as a child process: started within a deadline, paused, stopped.

The readiness check polls, because an outside process has no event to wait on; each server
module says what "ready" means for it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

STOP_DEADLINE_SECONDS = 5.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """One server process; `stop` always ends it (resuming it first if paused)."""

    #: How the failure message names the server.
    name = "server"

    def __init__(self, command: list[str], log: Path) -> None:
        self.command = command
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        #: How long the last start took, wall clock.
        self.start_seconds = 0.0

    def start_until(
        self, ready: Callable[[], bool], deadline_seconds: float, poll_seconds: float
    ) -> None:
        """Start it and poll `ready` until it holds, or fail the test by the deadline."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + deadline_seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            if ready():
                self.start_seconds = time.monotonic() - started
                return
            time.sleep(poll_seconds)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        pytest.fail(f"{self.name} was not ready within {deadline_seconds} s: {tail}")

    def pause(self) -> None:
        """SIGSTOP: it keeps its sockets but answers nothing (a slow or hung server)."""
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
