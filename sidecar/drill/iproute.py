"""The `ip` command (iproute2), the one way the drill changes the host's network.

Every call is bounded by IP_TIMEOUT_SECONDS and any failure is a NetworkError that names the
command, so a broken or hung `ip` ends a drill with a sentence, never a hang or a traceback.
The subnet search, the names and their teardown, and the pods' setup all run it from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path

#: How long one `ip` command may take before it counts as failed.
IP_TIMEOUT_SECONDS = 10.0
#: Where `ip netns add` mounts each namespace.
NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    """The pods' network could not be made (an `ip` command failed, or netns is not possible)."""


def ip_binary_or_none() -> str | None:
    """The `ip` binary's path, or None when iproute2 is not installed."""
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if Path(p).exists()), None
    )


def ip_binary() -> str:
    """The `ip` binary's path; NetworkError when there is none."""
    binary = ip_binary_or_none()
    if binary is None:
        raise NetworkError("no ip command (iproute2)")
    return binary


def ip_blocking(*args: str) -> str:
    """`ip args`, blocking, within IP_TIMEOUT_SECONDS; its output, or NetworkError naming it."""
    command = f"ip {' '.join(args)}"
    try:
        # The drill's own arguments: names it made, addresses it computed.
        done = subprocess.run(  # noqa: S603
            [ip_binary(), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=IP_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{command}: no answer within {IP_TIMEOUT_SECONDS:g} s") from None
    except OSError as e:
        raise NetworkError(f"{command}: {e}") from e
    if done.returncode != 0:
        raise NetworkError(f"{command}: {done.stderr.strip()[:300]} (exit {done.returncode})")
    return done.stdout


async def ip(*args: str) -> None:
    """`ip args` within IP_TIMEOUT_SECONDS, killed if it takes longer; NetworkError naming it."""
    command = f"ip {' '.join(args)}"
    try:
        process = await asyncio.create_subprocess_exec(
            ip_binary(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise NetworkError(f"{command}: {e}") from e
    try:
        async with asyncio.timeout(IP_TIMEOUT_SECONDS):
            _, err = await process.communicate()
    except TimeoutError:
        raise NetworkError(f"{command}: no answer within {IP_TIMEOUT_SECONDS:g} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        text = err.decode(errors="replace").strip()[:300]
        raise NetworkError(f"{command}: {text} (exit {process.returncode})")
