"""HTTP helpers for the API stand-in's tests: watch streams, slice reads and pod deletes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from sidecar.drill.objects import NAMESPACE

PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"

#: Watches opened by the running test; closed at its end by the `http` fixture (conftest.py).
OPEN: list[aiohttp.ClientResponse] = []


class Stream:
    """One watch, read event by event with a deadline."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, seconds: float = 3.0) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.response.content.readline(), seconds)
        return json.loads(line) if line else None

    async def until(self, predicate: Any, seconds: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(seconds):
            while True:
                event = await self.next(seconds)
                assert event is not None, "the watch ended first"
                if predicate(event):
                    return event


async def watch(http: aiohttp.ClientSession, path: str, **params: str) -> Stream:
    response = await http.get(path, params={"watch": "1", **params})
    OPEN.append(response)
    assert response.status == 200
    return Stream(response)


async def slices_of(http: aiohttp.ClientSession, service: str) -> list[dict[str, Any]]:
    async with http.get(
        SLICES, params={"labelSelector": f"kubernetes.io/service-name={service}"}
    ) as r:
        items: list[dict[str, Any]] = (await r.json())["items"]
        return items


def endpoints(slices: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for s in slices for e in s.get("endpoints") or [] if e["targetRef"]["name"] == name]


async def delete(http: aiohttp.ClientSession, name: str, **options: Any) -> aiohttp.ClientResponse:
    return await http.delete(f"{PODS}/{name}", json=options)
