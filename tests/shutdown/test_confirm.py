"""Phase confirm: an API that hangs or answers junk is decided by policy, the failure named."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.model.report import Outcome
from sidecar.shutdown.confirm import confirm
from tests.shutdown.doubles import forever

pytestmark = pytest.mark.looptime


class HangingPod:
    async def read_pod(self) -> dict[str, Any]:
        return await forever()  # type: ignore[no-any-return]


class BrokenPod:
    async def read_pod(self) -> dict[str, Any]:
        return {"metadata": {"deletionTimestamp": "yesterday"}}


async def test_an_api_that_never_answers_is_decided_by_policy_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.5
    confirmed = await confirm(HangingPod(), uid="u", when_unconfirmed="restart", deadline=deadline)
    assert loop.time() == pytest.approx(deadline)
    assert confirmed.kind == "restart"
    assert confirmed.api_failed
    assert confirmed.result.outcome is Outcome.DEGRADED
    assert confirmed.result.detail["api_error"] == "no answer in time"
    assert confirmed.result.detail["treated_as"] == "restart"


async def test_a_malformed_pod_is_named_and_decided_by_policy() -> None:
    deadline = asyncio.get_running_loop().time() + 1
    confirmed = await confirm(BrokenPod(), uid="u", when_unconfirmed="deletion", deadline=deadline)
    assert confirmed.kind == "deletion"
    assert confirmed.api_failed
    assert confirmed.result.outcome is Outcome.DEGRADED
    assert confirmed.result.detail == {
        "by": "token",
        "api_error": "MalformedAnswerError: pod: metadata.deletionTimestamp: "
        "expected RFC 3339, got 'yesterday'",
        "treated_as": "deletion",
    }
