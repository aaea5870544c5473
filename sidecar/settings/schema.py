"""The settings schema: frozen dataclasses whose fields carry their defaults, choices and rules."""

# No `from __future__ import annotations` here: the reader evaluates these annotations.

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated, Literal

from sidecar.settings.constraints import (
    DNS_LABEL,
    HEADER_VALUE,
    IP_ADDRESS,
    OUTSIDE_ISTIO,
    PORT,
    TRIMMED,
    URL,
    FromEnv,
    at_least,
    min_chars,
)
from sidecar.settings.registries import (
    Action,
    HttpActionSettings,
    HttpRegistrySettings,
    RetrySettings,
)
from sidecar.settings.registry_consul import ConsulRegistrySettings
from sidecar.settings.registry_etcd import EtcdRegistrySettings
from sidecar.settings.registry_eureka import EurekaRegistrySettings
from sidecar.settings.registry_nacos import NacosRegistrySettings
from sidecar.settings.registry_zookeeper import ZookeeperRegistrySettings

#: Every registry kind: adding one is its settings dataclass here, and its back end.
RegistrySettings = (
    HttpRegistrySettings
    | ConsulRegistrySettings
    | EtcdRegistrySettings
    | EurekaRegistrySettings
    | NacosRegistrySettings
    | ZookeeperRegistrySettings
)

Role = Literal["app", "proxy"]
Mode = Literal["classic", "native"]
TrafficSourceName = Literal["auto", "netlink", "proc"]
Unconfirmed = Literal["deletion", "restart"]
Port = Annotated[int, PORT]
IpAddress = Annotated[str, IP_ADDRESS]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The request header that carries the hook token (part of the external contract).
TOKEN_HEADER = "X-Shutdown-Token"  # noqa: S105 - a header name, not a secret


class Secret(str):
    """A string that never shows itself in a repr, a log line or `check` output."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class PodIdentity:
    """Who we are, from the downward API; empty where not given (local runs, tests)."""

    name: Annotated[str, FromEnv("POD_NAME")] = ""
    namespace: Annotated[str, FromEnv("POD_NAMESPACE")] = ""
    uid: Annotated[str, FromEnv("POD_UID")] = ""
    #: Comma-separated in the environment.
    ips: Annotated[tuple[IpAddress, ...], FromEnv("POD_IPS", "POD_IP")] = ()
    #: The node's IP: the kubelet's probes and hooks come from it, so it is never traffic.
    host_ip: Annotated[IpAddress, FromEnv("HOST_IP")] = ""
    #: The pod's labels, for registry templates (`{pod.labels[app]}`).
    labels: dict[str, str] = field(default_factory=dict)
    #: A downward-API volume file of the pod's labels (`metadata.labels`); it wins over `labels`.
    labels_file: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """One container whose preStop hook the coordinator answers."""

    name: Annotated[str, DNS_LABEL]
    role: Role = "app"
    #: Listening ports the container owns: inbound traffic is counted on them, and their
    #: disappearing from the shared network namespace is how its exit is seen.
    ports: tuple[Port, ...] = ()
    #: Process names seen through psutil when the pod shares its process namespace.
    process_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerSettings:
    """The agent's HTTP server and its security."""

    #: Outside Istio's 15000-15099, so the mesh never claims it.
    port: Annotated[int, PORT, OUTSIDE_ISTIO] = 15120
    #: Empty means every interface of both families: the kubelet calls the pod IP.
    host: str = ""
    #: Trimmed wherever it comes from (a file or a Secret's value often ends with a newline).
    token: Annotated[
        Secret | None,
        TRIMMED,
        HEADER_VALUE,
        min_chars(16),
        FromEnv("SHUTDOWN_COORDINATOR_TOKEN"),
    ] = None
    #: Read at load when no token is given (a mounted Secret).
    token_file: str | None = None
    #: Only for local experiments: lets hooks through without a token.
    allow_unauthenticated: bool = False
    #: classic: the agent gets SIGTERM with the apps; native: only after they exited (KEP-753).
    mode: Mode = "classic"
    #: After a SIGTERM with no hook yet, how long to wait for hooks before exiting; the kubelet
    #: sends hooks and SIGTERMs at about the same moment, so a few seconds cover the race.
    idle_sigterm_linger_seconds: float = 5.0


@dataclass(frozen=True)
class BudgetSettings:
    """The one budget every phase runs under."""

    #: Used when the API cannot tell the pod's deletionGracePeriodSeconds.
    grace_seconds: Annotated[
        float, at_least(1.0), FromEnv("TERMINATION_GRACE_PERIOD_SECONDS", fallback=True)
    ] = 30.0
    #: Left to each released group for its own SIGTERM handling before the next group's turn.
    sigterm_reserve_seconds: float = 5.0
    #: The last hook is answered this long before the kubelet's own timer would fire.
    answer_margin_seconds: float = 1.0


@dataclass(frozen=True)
class PhaseSettings:
    """Per-phase bounds; each phase also stops at the budget's deadline."""

    #: Without an API adapter, unroute waits this long instead of observing the EndpointSlices.
    unroute_fallback_delay_seconds: float = 3.0
    unroute_max_seconds: float = 60.0
    #: Quiesce learns how long a lull must last to mean "no more traffic" from the arrivals it
    #: sees (docs/quiesce.md); this is the longest such window, used until it has learned one.
    quiet_window_seconds: Annotated[float, at_least(0.05)] = 2.0
    #: The shortest learned window, however dense the traffic.
    quiet_window_min_seconds: Annotated[float, at_least(0.01)] = 0.2
    #: The shortest quiesce, a floor for the data plane's propagation delay.
    quiesce_min_seconds: float = 1.0
    #: An idle keep-alive connection from a caller holds quiesce until the caller closes it
    #: (a proxy does when the endpoint leaves its pool), at most this long into the phase.
    idle_hold_seconds: Annotated[float, at_least(0.0)] = 10.0
    #: The proxy's inbound drain (`Connection: close`) starts when a caller leaves, and at the
    #: latest this long into quiesce: draining earlier would hide callers leaving.
    proxy_drain_after_seconds: Annotated[float, at_least(0.0)] = 2.0
    quiesce_max_seconds: float = 30.0
    drain_max_seconds: float = 60.0
    #: How long the release of a later group waits for the earlier group to exit.
    exit_wait_max_seconds: float = 30.0
    #: How long the proxy release waits for the proxy's own in-flight requests after the apps exit.
    proxy_drain_max_seconds: float = 10.0


@dataclass(frozen=True)
class TrafficSettings:
    """How the shared network namespace is sampled."""

    #: One sampler, at this interval, only while a shutdown runs; quiesce ends at a sample, so
    #: this is also how late it may end (a sample costs ~5 ms per 1 000 sockets, and is kept
    #: under a fifth of a core whatever the interval: docs/benchmarks.md, shutdown/observe.py).
    sample_interval_seconds: Annotated[float, at_least(0.01)] = 0.1
    #: netlink sock_diag gives per-socket activity; /proc only counts (every connection is busy).
    source: TrafficSourceName = "auto"
    #: Peers whose connections are not traffic (the node's IP is added unless node_is_traffic).
    ignore_peers: tuple[IpNetwork, ...] = ()
    #: Callers reach the pod from the node's IP (an ingress on the same node's host network,
    #: NodePort traffic masqueraded to it): count them, and the kubelet's probes with them.
    node_is_traffic: bool = False


@dataclass(frozen=True)
class EnvoySettings:
    """The mesh proxy's admin API; no admin URL means no Envoy in this pod."""

    admin_url: Annotated[str | None, URL] = None
    #: Istio's pilot-agent, told to exit after Envoy is released (localhost only).
    pilot_agent_url: Annotated[str | None, URL] = None
    drain_inbound: bool = True
    quit_after_release: bool = True
    request_timeout_seconds: Annotated[float, at_least(0.05)] = 1.0


@dataclass(frozen=True)
class KubernetesSettings:
    """The API server: confirm the deletion, watch our EndpointSlices, post Events."""

    #: The file says true, false or auto (its default): on in a pod (KUBERNETES_SERVICE_HOST)
    #: or with a kubeconfig; the loader resolves auto to true or false.
    enabled: bool = False
    #: A kubeconfig for local runs; in a pod the service account is used.
    kubeconfig: Annotated[str | None, FromEnv("KUBECONFIG", fallback=True)] = None
    request_timeout_seconds: Annotated[float, at_least(0.05)] = 2.0
    #: A watch silent this long is replaced by a fresh list and watch: a dead connection is silent.
    watch_inactivity_seconds: Annotated[float, at_least(0.1)] = 10.0
    #: What a hook means when the API cannot say (unreachable, forbidden): trust the token and
    #: shut down (degraded), or treat it as one container's restart (no deregistration).
    when_unconfirmed: Unconfirmed = "deletion"
    #: Post Kubernetes Events on the pod for milestones and warnings.
    events: bool = True


@dataclass(frozen=True)
class Settings:
    """Everything the agent needs, validated."""

    containers: tuple[ContainerSpec, ...]
    #: Groups of app containers, released in this order; the proxy always goes last. Empty in
    #: the file means every app in one group (the loader fills it in).
    release_order: tuple[tuple[str, ...], ...] = ()
    pod: PodIdentity = field(default_factory=PodIdentity)
    server: ServerSettings = field(default_factory=ServerSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    phases: PhaseSettings = field(default_factory=PhaseSettings)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    #: External registries: marked down at announce, deregistered and verified at retire.
    registries: tuple[RegistrySettings, ...] = ()
    #: The app's own "offline" calls, made at announce, beside unroute.
    offline_calls: tuple[Action, ...] = ()
    #: Per-instance configuration removed at retire, after the app has exited.
    config_cleanup: tuple[Action, ...] = ()
    #: The guarantee webhook's preparation (docs/guarantee.md), run by `POST /prepare` with
    #: announce; no url means none.
    prepare_action: Action = field(default_factory=HttpActionSettings)
    #: Retries of every registry and action call, always inside the deadline.
    registry_retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def proxy(self) -> ContainerSpec | None:
        """The proxy container, if the pod has one."""
        return next((c for c in self.containers if c.role == "proxy"), None)

    def container(self, name: str) -> ContainerSpec | None:
        """The container of that name, if the plan knows it."""
        return next((c for c in self.containers if c.name == name), None)
