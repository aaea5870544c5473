"""The deletion webhook (POST /validate-delete): refuse a pod's DELETE until its agent prepared.

What each review gets is in docs/guarantee.md. The pure part (`decide`) says whether the agent
must be asked; `Guarantee` asks it, counts refusals per pod uid and lets the pod go at its cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiohttp
import structlog

from sidecar.injector import review

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    #: A namespace's hook token (its Secret), or an exception saying why there is none.
    TokenOf = Callable[[str], Awaitable[str]]

log = structlog.get_logger(__name__)

#: The annotation a pod opts in with; only the value "true" counts.
ANNOTATION = "shutdown-coordinator.io/guarantee"
#: Namespaces never guarded, whatever the selector says (the injector's own is added).
PROTECTED_NAMESPACES = frozenset({"kube-system"})
#: Looking up the namespace's hook token (cached by the caller; the first one asks the API).
TOKEN_TIMEOUT_SECONDS = 0.8
#: The agent's answer must come within this (it answers within 1 s); with the lookup and the
#: Event, below the server's 3 s for the whole decision and the configuration's timeoutSeconds (5).
AGENT_TIMEOUT_SECONDS = 1.5
#: After this many refusals of one pod, or this long after its first, its deletion is allowed.
CAP_REFUSALS = 60
CAP_SECONDS = 300.0
#: Pods remembered at once; the oldest is forgotten first (its count starts again).
REMEMBERED_PODS = 4096
#: Posting the Warning Event may hold the answer this long at most.
EVENT_TIMEOUT_SECONDS = 0.5
#: At most this much of the agent's answer is read.
ANSWER_MAX_BYTES = 64 * 1024
TOKEN_HEADER = "X-Shutdown-Token"  # noqa: S105  # the header's name, not a secret


class PodEvents(Protocol):
    """Warning Events on other pods (the Kubernetes API; raises on failure)."""

    async def post_pod_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        """Post one Warning Event about that pod."""
        ...


def decide(deletion: review.DeleteReview, protected: frozenset[str]) -> review.Answer | None:
    """The answer that needs no agent, or None when the agent must be asked. Pure."""
    if deletion.namespace in protected:
        return review.allow(deletion.uid, "protected")
    if deletion.annotations.get(ANNOTATION) != "true":
        return review.allow(deletion.uid, "not_opted_in")
    if deletion.terminating:
        return review.allow(deletion.uid, "terminating")
    if deletion.dry_run:
        warning = "dry run: the agent was not asked; a real deletion waits until it is prepared"
        return review.allow(deletion.uid, "dry_run", [warning])
    if deletion.phase != "Running" or not _is_ip(deletion.pod_ip):
        return review.allow(deletion.uid, "not_running")
    return None


@dataclass
class _Refused:
    first_at: float
    count: int = 0


class Guarantee:
    """Asks agents to prepare; remembers each refused pod's refusals to enforce the cap."""

    def __init__(
        self,
        token: str | None,
        *,
        token_of: TokenOf | None = None,
        agent_port: int = 15120,
        own_namespace: str = "shutdown-coordinator-system",
        cap_refusals: int = CAP_REFUSALS,
        cap_seconds: float = CAP_SECONDS,
        agent_timeout_seconds: float = AGENT_TIMEOUT_SECONDS,
        events: PodEvents | None = None,
    ) -> None:
        self._token = token
        self._token_of = token_of
        self._port = agent_port
        self.protected = PROTECTED_NAMESPACES | {own_namespace}
        self._cap_refusals = cap_refusals
        self._cap_seconds = cap_seconds
        self._timeout = agent_timeout_seconds
        self._events = events
        self._refused: OrderedDict[str, _Refused] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session to the agents."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def answer(self, deletion: review.DeleteReview) -> review.Answer:
        """Allowed if the pod needs no guard, is prepared or passed its cap; else refused."""
        decided = decide(deletion, self.protected)
        if decided is not None:
            return decided
        where = f"pod {deletion.namespace}/{deletion.name}"
        if self._token is None and self._token_of is None:
            return review.allow(deletion.uid, "no_token", ["not guarded: no hook token"])
        token, why = await self._token_for(deletion.namespace)
        not_yet = await self._ask(deletion, token) if token is not None else why
        key = deletion.pod_uid or f"{deletion.namespace}/{deletion.name}"
        if not_yet is None:
            self._refused.pop(key, None)
            return review.allow(deletion.uid, "prepared")
        refused = self._count(key)
        elapsed = asyncio.get_running_loop().time() - refused.first_at
        if refused.count > self._cap_refusals or elapsed >= self._cap_seconds:
            self._refused.pop(key, None)
            await self._warn(deletion, not_yet, refused.count - 1, elapsed)
            warning = f"deleted unprepared after its cap: {not_yet}"
            return review.allow(deletion.uid, "cap_passed", [warning])
        message = (
            f"{where} is not prepared for deletion yet ({not_yet}); retry later "
            f"(refusal {refused.count}; allowed anyway after {self._cap_refusals} refusals "
            f"or {self._cap_seconds:g} s)"
        )
        return review.refuse(deletion.uid, "refused", message)

    def _count(self, key: str) -> _Refused:
        refused = self._refused.get(key)
        if refused is None:
            refused = _Refused(asyncio.get_running_loop().time())
            self._refused[key] = refused
            while len(self._refused) > REMEMBERED_PODS:
                self._refused.popitem(last=False)
        self._refused.move_to_end(key)
        refused.count += 1
        return refused

    async def _token_for(self, namespace: str) -> tuple[str | None, str]:
        """The fixed token, else the namespace's; without one, None and why."""
        if self._token is not None or self._token_of is None:
            return self._token, "no hook token"
        try:
            async with asyncio.timeout(TOKEN_TIMEOUT_SECONDS):
                return await self._token_of(namespace), ""
        except TimeoutError:
            return None, f"no hook token: no answer within {TOKEN_TIMEOUT_SECONDS:g} s"
        except Exception as e:  # the lookup's errors say what is wrong (NamespaceLookupError)
            return None, f"no hook token: {str(e)[:200]}"

    async def _ask(self, deletion: review.DeleteReview, token: str) -> str | None:
        """POST /prepare to the pod's agent: None once prepared, else what is not yet."""
        url = f"http://{_host(deletion.pod_ip)}:{self._port}/prepare"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url,
                headers={TOKEN_HEADER: token},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as response:
                body = await _read(response.content)
                status = response.status
        except TimeoutError:
            return f"its agent did not answer within {self._timeout:g} s"
        except aiohttp.ClientError as e:
            return f"its agent cannot be reached: {type(e).__name__}"
        return verdict(status, body)

    async def _warn(
        self, deletion: review.DeleteReview, not_yet: str, refusals: int, elapsed: float
    ) -> None:
        message = (
            f"deletion allowed unprepared after {refusals} refusals in {elapsed:.0f} s "
            f"(cap {self._cap_refusals} refusals or {self._cap_seconds:g} s): {not_yet}"
        )
        log.warning(
            "guarantee_cap_passed",
            namespace=deletion.namespace,
            pod=deletion.name,
            pod_uid=deletion.pod_uid,
            message=message,
        )
        if self._events is None:
            return
        with contextlib.suppress(Exception):  # an Event is a courtesy; the log line has it all
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                await self._events.post_pod_event(
                    deletion.namespace,
                    deletion.name,
                    deletion.pod_uid,
                    "DeletedUnprepared",
                    message,
                )


def verdict(status: int, body: bytes) -> str | None:
    """What an agent's /prepare answer says: None once prepared, else what is not yet. Pure."""
    if status != 200:  # the one status /prepare answers with
        return f"its agent answered HTTP {status}"
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return "its agent's answer is not JSON"
    if not isinstance(document, dict):
        return "its agent's answer is not a JSON object"
    if document.get("prepared") is True:
        return None
    return "not done: " + _pending(document.get("steps"))


def _pending(steps: object) -> str:
    """The steps an agent's answer lists as not done, with their outcome."""
    if not isinstance(steps, dict) or not steps:
        return "the agent names no step"
    names = [
        f"{str(name)[:40]} {_outcome(entry)}"
        for name, entry in steps.items()
        if _outcome(entry) not in ("ok", "skipped")
    ]
    return ", ".join(names[:5]) or "the agent names no step"


def _outcome(entry: object) -> str:
    outcome = entry.get("outcome") if isinstance(entry, dict) else None
    return str(outcome)[:40] if outcome is not None else "unknown"


def _host(ip: str) -> str:
    """An IP for a URL: IPv6 in brackets (`decide` let only IPs through)."""
    address = ipaddress.ip_address(ip)
    return f"[{address}]" if address.version == 6 else str(address)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _read(content: aiohttp.StreamReader) -> bytes:
    """The answer's body up to ANSWER_MAX_BYTES (a `read(n)` may return only what has come)."""
    chunks: list[bytes] = []
    size = 0
    while size < ANSWER_MAX_BYTES and (chunk := await content.read(ANSWER_MAX_BYTES - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
