"""Settings of the etcd v3 registry back end, spoken to through etcd's JSON gRPC gateway."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

from dataclasses import dataclass
from typing import Annotated, Literal

from sidecar.settings.constraints import URL, Rule, at_least
from sidecar.settings.registries import PLACEHOLDER, TEMPLATE


def _names_the_pod(template: str) -> bool:
    return PLACEHOLDER.search(template) is not None


def _ends_after_its_placeholder(template: str) -> bool:
    last = None
    for last in PLACEHOLDER.finditer(template):  # noqa: B007 # only the last match counts
        pass
    return last is not None and last.end() < len(template)


#: A key without a pod placeholder is the same for every replica: retire would remove the others'.
POD_KEY = Rule(
    "a key naming the pod with a placeholder, e.g. /services/web/{pod.ip}:8080",
    lambda v: not v or _names_the_pod(v),
)
#: "/web/{pod.ip}" for 10.1.0.7 also matches 10.1.0.70: the prefix must end after a delimiter.
POD_PREFIX = Rule(
    "a prefix with a pod placeholder followed by a delimiter, e.g. /services/web/{pod.ip}:",
    lambda v: not v or (_names_the_pod(v) and _ends_after_its_placeholder(v)),
)
SOME_ENDPOINTS = Rule("at least one endpoint", lambda v: len(v) >= 1)
EtcdUrl = Annotated[str, URL]


@dataclass(frozen=True)
class EtcdRegistrySettings:
    """An instance registered in etcd as one key or every key under a prefix (leases included).

    Exactly one of `key` and `prefix` is set (checked when the back end is built, naming the key).
    """

    name: str
    #: Client URLs of the cluster (a Service in front of it, or each member): tried in turn.
    endpoints: Annotated[tuple[EtcdUrl, ...], SOME_ENDPOINTS]
    kind: Literal["etcd"] = "etcd"
    #: The gateway's path prefix: `/v3` (etcd 3.4 and later), `/v3beta` (3.3 and 3.4).
    api_prefix: Literal["/v3", "/v3beta"] = "/v3"
    #: The instance's key, a template over the pod identity.
    key: Annotated[str, TEMPLATE, POD_KEY] = ""
    #: Or every key under this prefix (Dubbo or Spring Cloud style layouts), a template too.
    prefix: Annotated[str, TEMPLATE, POD_PREFIX] = ""
    #: Announce writes `mark_down_value` here (a key without a lease); empty: no mark-down.
    mark_down_key: Annotated[str, TEMPLATE, POD_KEY] = ""
    mark_down_value: Annotated[str, TEMPLATE] = "down"
    #: Also revoke the leases the removed keys were attached to (every key of such a lease goes).
    revoke_leases: bool = True
    #: Whether retire may force-remove: remove again, revoking every lease found under the key.
    force_remove: bool = True
    #: An etcd user, with `password_file`; empty: no authentication.
    username: str = ""
    #: A file (a mounted Secret) holding the user's password, read at each authentication.
    password_file: str = ""
    #: Per request, and never past the phase's deadline.
    timeout_seconds: Annotated[float, at_least(0.05)] = 2.0


def etcd_problems(settings: EtcdRegistrySettings) -> list[str]:
    """What is wrong across fields (`field: message`), for checks at load time; empty if fine."""
    problems = []
    if bool(settings.key) == bool(settings.prefix):
        given = "both" if settings.key else "neither"
        problems.append(f"key: expected exactly one of key and prefix, got {given}")
    if bool(settings.username) != bool(settings.password_file):
        problems.append("password_file: expected username and password_file together")
    return problems
