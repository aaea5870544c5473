"""The process probe: a process is seen by its comm name while it runs, not after it exits."""

from __future__ import annotations

import asyncio
import secrets
import sys

from sidecar.adapters.processes import ProcessProbe

# A child that renames itself (comm, as ps shows it) and waits on its stdin: an app stand-in.
CHILD = (
    "import sys; open('/proc/self/comm', 'w').write(sys.argv[1]); "
    "print('ok', flush=True); sys.stdin.read()"
)


async def test_a_named_process_is_seen_running_then_gone() -> None:
    name = "sc-" + secrets.token_hex(4)
    probe = ProcessProbe()
    assert await probe.running(frozenset({name})) is False
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        name,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    await child.stdout.readline()  # renamed by now
    assert await probe.running(frozenset({name})) is True
    child.kill()
    await child.wait()
    assert await probe.running(frozenset({name})) is False


async def test_no_names_means_nothing_to_see() -> None:
    assert await ProcessProbe().running(frozenset()) is None
