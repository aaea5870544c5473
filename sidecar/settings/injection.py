"""The injection template: what the webhook and `inject` add to a pod, read like every group."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

import posixpath
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from sidecar import __version__
from sidecar.settings.constraints import DNS_LABEL, OUTSIDE_ISTIO, PORT, Rule

Mode = Literal["classic", "native"]
ExistingPreStop = Literal["keep", "skip"]

_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: An annotation prefix is a DNS subdomain of at most 253 characters.
ANNOTATION_PREFIX = Rule(
    "a DNS subdomain (e.g. shutdown-coordinator.io)",
    lambda v: len(v) <= 253 and bool(_PREFIX.match(v)),
)
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?)?$")
#: A Kubernetes quantity such as 20m, 64Mi; empty means not set.
QUANTITY = Rule("a quantity such as 20m or 64Mi, or empty", lambda v: bool(_QUANTITY.match(v)))
#: Where injection mounts the token Secret and the pod-info files in the agent's container.
TOKEN_DIR = "/var/run/shutdown-coordinator"  # noqa: S105 - a path, not a secret
PODINFO_DIR = "/etc/shutdown-coordinator"


#: Where a Secret may be mounted: directories no program of the image lives in.
_MOUNT_ROOTS = ("/etc/", "/var/run/", "/run/", "/secrets/", "/mnt/")
#: The service account token the agent reads the API with (automounted there).
_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _mounts_ok(mounts: dict[str, str]) -> bool:
    paths = [posixpath.normpath(p) if p.startswith("/") else "" for p in mounts.values()]
    taken = (TOKEN_DIR, PODINFO_DIR, _SERVICE_ACCOUNT_DIR)
    return all(
        len(name) <= 253
        and bool(_PREFIX.match(name))
        and ".." not in raw.split("/")
        and any((path + "/").startswith(root) and path + "/" != root for root in _MOUNT_ROOTS)
        and not any(_nested(path, other) for other in (*taken, *paths[:index]))
        for index, ((name, raw), path) in enumerate(zip(mounts.items(), paths, strict=True))
    )


#: Secret name -> directory in the agent, apart from each other and from the agent's own.
SECRET_MOUNTS = Rule(
    "Secret names mapped to distinct directories under /etc, /var/run, /run, /secrets or /mnt, "
    f"none inside another, nor {TOKEN_DIR}, {PODINFO_DIR} or the service account's",
    _mounts_ok,
    normalize=lambda mounts: {name: posixpath.normpath(p) for name, p in mounts.items()},
)
#: Non-root: the image's user.
NON_ROOT = Rule("a user id other than 0", lambda v: 0 < v < 2**31)


@dataclass(frozen=True)
class InjectionResources:
    """The agent container's requests and limits (docs/benchmarks.md: about 46 MiB under load)."""

    cpu_request: Annotated[str, QUANTITY] = "20m"
    memory_request: Annotated[str, QUANTITY] = "64Mi"
    #: No CPU limit by default: throttling the agent during a shutdown delays every hook.
    cpu_limit: Annotated[str, QUANTITY] = ""
    memory_limit: Annotated[str, QUANTITY] = "128Mi"


@dataclass(frozen=True)
class InjectionTemplate:
    """One cluster-wide template; per-pod choices come from annotations under the prefix."""

    #: Written in the marker annotation `{prefix}/injected`: the same version means done.
    version: str = __version__
    image: str = f"shutdown-coordinator:{__version__}"
    #: The agent's hook port, outside Istio's 15000-15099.
    port: Annotated[int, PORT, OUTSIDE_ISTIO] = 15120
    #: classic container, or native sidecar (init container with restartPolicy: Always).
    mode: Mode = "classic"
    annotation_prefix: Annotated[str, ANNOTATION_PREFIX] = "shutdown-coordinator.io"
    #: The per-namespace Secret holding the hook token, mounted into the agent as a file.
    token_secret: Annotated[str, DNS_LABEL] = "shutdown-coordinator-token"  # noqa: S105 - a name
    #: The key of that Secret holding the token.
    token_secret_key: str = "token"  # noqa: S105 - a key name
    #: A container with a preStop of its own: keep its HTTP call as the app's offline call, or
    #: leave the container alone (docs/injection.md).
    existing_prestop: ExistingPreStop = "keep"
    container_name: Annotated[str, DNS_LABEL] = "shutdown-coordinator"
    run_as_user: Annotated[int, NON_ROOT] = 65532
    resources: InjectionResources = field(default_factory=InjectionResources)
    #: The mesh proxy's container name (Istio's).
    proxy_container: Annotated[str, DNS_LABEL] = "istio-proxy"
    #: Agent settings every injected pod gets (registries, cleanup, envoy URLs, phases...),
    #: under what each pod's annotations tune; checked by the agent's schema when read.
    agent_settings: dict[str, object] = field(default_factory=dict)
    #: Secrets mounted read-only into the agent (registry credentials' `*_file` paths), by
    #: name -> directory. Optional volumes: a namespace without the Secret still runs its pods.
    secret_mounts: Annotated[dict[str, str], SECRET_MOUNTS] = field(default_factory=dict)
