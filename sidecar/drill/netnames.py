"""The names of the drill's namespaces and links, whose they are, and deleting them.

Every name carries its owner: the process's id and a random token, fixed width, so that runs
side by side (in other PID namespaces or containers on the same network) never take each
other's. The owner holds the abstract unix socket `@scd-<owner>` while it runs: abstract
sockets belong to the network namespace, as the links do, so every run there sees it.
Whatever a run whose socket nobody holds left behind is deleted by the next run; a run's own
names are deleted when each scenario ends (`teardown`), and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import secrets
import socket
import threading
from pathlib import Path

from sidecar.drill.iproute import NETNS_DIR, NetworkError, ip_blocking

#: Every name the drill gives a namespace or a link starts so (then its owner, see `_NAME`).
PREFIX = "scd"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Base-36 digits of each part of a name: 36**5 is above any pid_max (2**22).
_PID_WIDTH, _TOKEN_WIDTH, _SCENARIO_WIDTH, _POD_WIDTH = 5, 2, 2, 2
#: PREFIX, owner (pid, token), scenario, then `b` (the bridge), `p` and the pod's index (its
#: veth: 15 characters, Linux's longest link name) or `-` and the pod's name (its namespace).
_NAME = re.compile(
    rf"^{PREFIX}(?P<owner>[0-9a-z]{{{_PID_WIDTH + _TOKEN_WIDTH}}})"
    rf"[0-9a-z]{{{_SCENARIO_WIDTH}}}(?:b|p[0-9a-z]{{{_POD_WIDTH}}}|-.+)$"
)


def owner_of(name: str) -> str | None:
    """The owner (pid and token) in a name the drill gave, or None if it gave no such name."""
    match = _NAME.match(name)
    return match.group("owner") if match else None


def owner_id(pid: int, token: int) -> str:
    """An owner's part of every name: its pid and a token, each in fixed-width base 36."""
    return _base36(pid, _PID_WIDTH) + _base36(token, _TOKEN_WIDTH)


def veth_name(tag: str, index: int) -> str:
    """The host side of pod `index`'s veth."""
    if not 0 <= index < 36**_POD_WIDTH:
        raise NetworkError(f"pod {index}: at most {36**_POD_WIDTH} pods fit in link names")
    return f"{tag}p{_base36(index, _POD_WIDTH)}"


def owner() -> str:
    """This process's owner id, claimed on first use: its lock is held until the process ends."""
    global _owner  # noqa: PLW0603 - one per process
    with _claiming:
        if _owner is None:
            for _ in range(64):
                candidate = owner_id(os.getpid(), secrets.randbelow(36**_TOKEN_WIDTH))
                lock = _hold(candidate)
                if lock is not None:
                    _owner = (candidate, lock)
                    # atexit runs last-registered first: teardown, then the lock is let go.
                    atexit.register(lock.close)
                    atexit.register(teardown, f"{PREFIX}{candidate}")
                    break
            else:
                raise NetworkError(f"pid {os.getpid()}: every owner token is held by another run")
        return _owner[0]


_owner: tuple[str, socket.socket] | None = None
_scenarios = 0
#: The owner and the count are claimed from worker threads (`asyncio.to_thread`).
_claiming = threading.RLock()


def new_scenario_tag() -> str:
    """A new scenario's prefix (blocking: the first one cleans up after dead runs)."""
    global _scenarios  # noqa: PLW0603 - one count per process, as the owner
    with _claiming:
        if _owner is None:
            clean_dead_owners()
        mine = owner()
        _scenarios += 1
        return f"{PREFIX}{mine}{_base36(_scenarios % 36**_SCENARIO_WIDTH, _SCENARIO_WIDTH)}"


def _hold(owner: str) -> socket.socket | None:
    """`owner`'s lock, if nobody holds it (the caller then does), or None.

    Abstract unix sockets live as long as the socket and belong to the network namespace,
    which is what the drill's links and routes share, whatever the PID namespaces.
    """
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        lock.bind(f"\0{PREFIX}-{owner}")
    except OSError as e:
        lock.close()
        if e.errno == errno.EADDRINUSE:
            return None
        raise NetworkError(f"the lock of run {owner}: {e}") from e
    return lock


def leftovers(owner: str | None = None) -> list[str]:
    """Namespaces and links the drill made and did not delete (of one owner, or of any)."""
    names = _netns_names() + _link_names()
    return [n for n in names if (o := owner_of(n)) is not None and owner in (None, o)]


def clean_dead_owners() -> list[str]:
    """Delete what runs whose lock nobody holds left behind; what could not be, said."""
    failed = []
    for dead in sorted({o for name in leftovers() if (o := owner_of(name)) is not None}):
        try:
            lock = _hold(dead)
        except NetworkError as e:
            failed.append(str(e))
            continue
        if lock is None:
            continue  # alive: in this process, or another PID namespace, or another container
        with lock:  # held while deleting, so no new run takes this owner meanwhile
            failed += teardown(f"{PREFIX}{dead}")
    return failed


def teardown(tag: str) -> list[str]:
    """Delete every namespace and link whose name starts with `tag`; what could not be, said.

    Blocking and never raises; each `ip` has IP_TIMEOUT_SECONDS, so it always ends. A
    namespace's veth end goes with it and its peer too, unless a process still keeps the
    namespace alive: then the host's end is deleted, which deletes both.
    """
    failed = []
    for name in _netns_names():
        if name.startswith(tag):
            with contextlib.suppress(NetworkError):
                ip_blocking("netns", "del", name)
            if (NETNS_DIR / name).exists():
                failed.append(f"namespace {name}")
    for name in _link_names():
        if name.startswith(tag):
            with contextlib.suppress(NetworkError):
                ip_blocking("link", "del", name)
            if Path("/sys/class/net", name).exists():
                failed.append(f"link {name}")
    return failed


def _base36(number: int, width: int) -> str:
    out = ""
    while number or len(out) < width:
        number, rest = divmod(number, 36)
        out = _DIGITS[rest] + out
    if len(out) > width:
        raise NetworkError(f"{len(out)} base-36 digits do not fit in {width}")
    return out


def _netns_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except OSError:
        return []


def _link_names() -> list[str]:
    try:
        return sorted(p.name for p in Path("/sys/class/net").iterdir())
    except OSError:
        return []
