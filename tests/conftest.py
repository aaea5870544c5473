"""Suite-wide guards: structlog at its defaults, and no test may leak tasks, threads or processes.

A leaked task keeps running into the next test; a leaked thread or child process outlives the
suite. Each is reported as an error of the test that left it, naming what was left.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import psutil
import pytest
import structlog

#: How long a task that is already finishing (cancelled, closing) gets before it counts as leaked.
_TASK_GRACE_SECONDS = 1.0
#: The same for a thread or a child process, on the wall clock.
_EXIT_GRACE_SECONDS = 3.0

_threads_before: set[int] = set()
_children_before: set[int] = set()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Torn down after every other fixture of the test, so what is left was leaked."""
    yield
    me = asyncio.current_task()
    left = {t for t in asyncio.all_tasks() if t is not me and not t.done()}
    if left:
        _, left = await asyncio.wait(left, timeout=_TASK_GRACE_SECONDS)
    if left:
        names = sorted(t.get_name() + ": " + repr(t.get_coro()) for t in left)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        pytest.fail(f"the test leaked {len(left)} task(s): " + "; ".join(names), pytrace=False)


def _live_threads() -> dict[int, threading.Thread]:
    # The loop's default executor is shut down when the loop closes, after the test's fixtures.
    return {
        t.ident: t
        for t in threading.enumerate()
        if t.ident is not None and t.is_alive() and not t.name.startswith("asyncio_")
    }


def _live_children() -> dict[int, psutil.Process]:
    children: dict[int, psutil.Process] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                children[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return children


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _threads_before.clear()
    _threads_before.update(_live_threads())
    _children_before.clear()
    _children_before.update(_live_children())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    threads = [t for ident, t in _live_threads().items() if ident not in _threads_before]
    for thread in threads:
        thread.join(_EXIT_GRACE_SECONDS / max(len(threads), 1))
    threads = [t for t in threads if t.is_alive()]
    children = [c for pid, c in _live_children().items() if pid not in _children_before]
    _, children = psutil.wait_procs(children, timeout=_EXIT_GRACE_SECONDS)
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=_EXIT_GRACE_SECONDS)
    leaks = [f"thread {t.name!r}" for t in threads] + [
        f"process {c.pid} ({' '.join(_cmdline(c))[:80]})" for c in children
    ]
    if leaks:
        pytest.fail("the test leaked: " + ", ".join(leaks), pytrace=False)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return ["?"]
