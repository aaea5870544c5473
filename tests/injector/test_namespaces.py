"""The injector's per-namespace cache: bounded, expiring, one load per key shared by its waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sidecar.errors import ApiError
from sidecar.injector.namespaces import Cache, NamespaceLookupError, describe, selected_by_any


class Loads:
    """A loader that counts its calls and, when `gate` is set, waits for it first."""

    def __init__(self, gate: asyncio.Event | None = None, error: Exception | None = None) -> None:
        self.calls = 0
        self.gate = gate
        self.error = error
        self.started = asyncio.Event()

    def __call__(self, value: str) -> Any:
        async def load() -> str:
            self.calls += 1
            self.started.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            return value

        return load


async def _run(action: Callable[[], object]) -> None:
    action()


async def test_values_expire_after_their_ttl() -> None:
    now = [0.0]
    cache: Cache[str] = Cache(10.0, clock=lambda: now[0])
    loads = Loads()
    assert await cache.get("shop", loads("a")) == "a"
    now[0] = 9.9
    assert await cache.get("shop", loads("b")) == "a"
    now[0] = 10.1
    assert await cache.get("shop", loads("c")) == "c"
    assert loads.calls == 2


async def test_the_least_recently_used_namespace_goes_first() -> None:
    cache: Cache[str] = Cache(60.0, max_entries=2)
    loads = Loads()
    await cache.get("a", loads("a"))
    await cache.get("b", loads("b"))
    await cache.get("a", loads("a"))  # a is now the most recent
    await cache.get("c", loads("c"))  # b goes
    assert len(cache) == 2
    assert loads.calls == 3
    await cache.get("a", loads("a"))
    assert loads.calls == 3
    await cache.get("b", loads("b"))
    assert loads.calls == 4


async def test_waiters_share_one_load_and_its_failure_which_is_not_kept() -> None:
    gate = asyncio.Event()
    error = NamespaceLookupError("get secret: forbidden")
    loads = Loads(gate, error)
    cache: Cache[str] = Cache(60.0)
    waiters = [asyncio.create_task(cache.get("shop", loads("x")))]
    await loads.started.wait()
    waiters += [asyncio.create_task(cache.get("shop", loads("x"))) for _ in range(4)]
    # Tasks take their first step in the order they were made: the waiters ask first.
    await asyncio.create_task(_run(gate.set))
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert results == [error] * 5
    assert loads.calls == 1
    loads.error = None
    assert await cache.get("shop", loads("y")) == "y"
    assert loads.calls == 2


async def test_a_waiter_cut_short_leaves_the_load_to_the_others() -> None:
    gate = asyncio.Event()
    loads = Loads(gate)
    cache: Cache[str] = Cache(60.0)
    first = asyncio.create_task(cache.get("shop", loads("token")))
    await loads.started.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cache.get("shop", loads("other")), timeout=0.01)
    gate.set()
    assert await first == "token"
    assert loads.calls == 1


async def test_a_cancelled_load_fails_its_waiters_without_cancelling_them() -> None:
    gate = asyncio.Event()
    loads = Loads(gate)
    cache: Cache[str] = Cache(60.0)
    loader = asyncio.create_task(cache.get("shop", loads("token")))
    await loads.started.wait()
    waiter = asyncio.create_task(cache.get("shop", loads("token")))
    await asyncio.create_task(_run(loader.cancel))  # after the waiter's first step
    with pytest.raises(asyncio.CancelledError):
        await loader
    with pytest.raises(NamespaceLookupError, match="the lookup was cancelled"):
        await waiter
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("labels", "selectors", "selected"),
    [
        ({"app": "web"}, {"web": {"app": "web"}}, True),
        ({"app": "web", "tier": "front"}, {"web": {"app": "web"}}, True),
        ({"app": "web"}, {"web": {"app": "web", "tier": "front"}}, False),
        ({"app": "web"}, {"external": {}}, False),
        (None, {"web": {"app": "web"}}, False),
        (None, {"external": {}}, False),
        ({"app": "web"}, {}, False),
    ],
)
def test_a_service_selects_a_pod_when_its_whole_selector_matches(
    labels: dict[str, str] | None, selectors: dict[str, dict[str, str]], selected: bool
) -> None:
    metadata = {"labels": labels} if labels is not None else {}
    assert selected_by_any({"metadata": metadata}, selectors) is selected


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ApiError("get secret", 403, 'HTTP 403: {"kind": "Status"}'), "get secret: forbidden"),
        (ApiError("get secret", 404, "HTTP 404: {}"), "get secret: not found"),
        (ApiError("create secret", 422, "HTTP 422: {}"), "create secret: HTTP 422"),
        (
            ApiError("list services", None, "no answer within 1 s"),
            "list services: no answer within 1 s",
        ),
        (
            ApiError("get secret", 200, "the Secret has no key 'token'"),
            "get secret: the Secret has no key 'token'",
        ),
    ],
)
def test_api_failures_are_said_in_a_few_words(error: ApiError, said: str) -> None:
    assert describe(error) == said
