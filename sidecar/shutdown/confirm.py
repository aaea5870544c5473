"""Phase confirm: whether the pod is being deleted, or one container merely restarts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sidecar.errors import ApiError
from sidecar.model.deletion import PodDeletion, read_deletion
from sidecar.model.report import Outcome, Result

if TYPE_CHECKING:
    from sidecar.shutdown.protocols import PodSource


@dataclass(frozen=True)
class Confirmation:
    """What the hook means, and what the API said of the deletion (None: it did not say)."""

    kind: Literal["deletion", "restart"]
    deletion: PodDeletion | None
    result: Result
    #: The API could not be asked: unroute must not rely on it either.
    api_failed: bool = False

    @property
    def confirmed(self) -> bool:
        """Whether the API itself said the pod is being deleted (or already gone)."""
        return self.kind == "deletion" and self.result.detail.get("by") == "api"


async def confirm(
    pods: PodSource | None,
    *,
    uid: str,
    when_unconfirmed: Literal["deletion", "restart"],
    deadline: float,
) -> Confirmation:
    """Read our pod once: deletionTimestamp set means deletion; unset, a container restart.

    No answer by `deadline` (loop time), or any failure, is decided by `when_unconfirmed`.
    """
    if pods is None:
        return Confirmation("deletion", None, Result(Outcome.OK, {"by": "token", "api": "off"}))
    try:
        async with asyncio.timeout_at(deadline):
            deletion = read_deletion(await pods.read_pod())
    except ApiError as e:
        if e.status != 404:
            return _unconfirmed(str(e), when_unconfirmed)
        # Gone from the API already: force-deleted (A9) or removed; the kubelet still stops us.
        gone = "not found: force-deleted or already removed"
    except Exception as e:  # no answer in time, a malformed one, an adapter bug: the token
        reason = "no answer in time" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
        return _unconfirmed(reason, when_unconfirmed)
    else:
        replaced = bool(uid and deletion.uid and deletion.uid != uid)
        gone = f"replaced: the API has uid {deletion.uid}, we are {uid}" if replaced else ""
    if gone:
        return Confirmation("deletion", None, Result(Outcome.OK, {"by": "api", "pod": gone}))
    if not deletion.deleting:
        restart = {"by": "api", "kind": "restart", "reason": "no deletionTimestamp"}
        return Confirmation("restart", deletion, Result(Outcome.OK, restart))
    detail: dict[str, Any] = {
        "by": "api",
        "kind": "deletion",
        "deletion_grace_seconds": deletion.grace_seconds,
    }
    return Confirmation("deletion", deletion, Result(Outcome.OK, detail))


def _unconfirmed(error: str, policy: Literal["deletion", "restart"]) -> Confirmation:
    detail = {"by": "token", "api_error": error, "treated_as": policy}
    return Confirmation(policy, None, Result(Outcome.DEGRADED, detail), api_failed=True)
