"""The one settings schema: a frozen tree, read from a YAML file and the environment, validated."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from sidecar.errors import ConfigError
from sidecar.validate import Section, port, show, url

if TYPE_CHECKING:
    from collections.abc import Mapping

Role = Literal["app", "proxy"]
Mode = Literal["classic", "native"]
TrafficSourceName = Literal["auto", "netlink", "proc"]

#: The request header that carries the hook token (part of the external contract).
TOKEN_HEADER = "X-Shutdown-Token"  # noqa: S105 - a header name, not a secret

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MISSING: Any = object()


class Secret(str):
    """A string that never shows itself in a repr, a log line or `check` output."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class PodIdentity:
    """Who we are, from the downward API; empty where not given (local runs, tests)."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    ips: tuple[str, ...] = ()
    #: The node's IP: the kubelet's probes and hooks come from it, so it is never traffic.
    host_ip: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """One container whose preStop hook the coordinator answers."""

    name: str
    role: Role
    #: Listening ports the container owns: inbound traffic is counted on them, and their
    #: disappearing from the shared network namespace is how its exit is seen.
    ports: tuple[int, ...] = ()
    #: Process names seen through psutil when the pod shares its process namespace.
    process_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerSettings:
    """The agent's HTTP server and its security."""

    #: Outside Istio's 15000-15099, so the mesh never claims it.
    port: int = 15120
    #: Empty means every interface of both families: the kubelet calls the pod IP.
    host: str = ""
    token: Secret | None = None
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
    grace_seconds: float = 30.0
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
    #: No new inbound traffic for this long means the data plane has caught up.
    quiet_window_seconds: float = 2.0
    #: The shortest quiesce, a floor for the data plane's propagation delay.
    quiesce_min_seconds: float = 1.0
    quiesce_max_seconds: float = 30.0
    drain_max_seconds: float = 60.0
    #: How long the release of a later group waits for the earlier group to exit.
    exit_wait_max_seconds: float = 30.0
    #: How long the proxy release waits for the proxy's own in-flight requests after the apps exit.
    proxy_drain_max_seconds: float = 10.0


@dataclass(frozen=True)
class TrafficSettings:
    """How the shared network namespace is sampled."""

    #: One sampler, at this interval, only while a shutdown runs.
    sample_interval_seconds: float = 0.25
    #: netlink sock_diag gives per-socket activity; /proc only counts (every connection is busy).
    source: TrafficSourceName = "auto"
    #: Peers whose connections are not traffic (the node's IP is always added).
    ignore_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class EnvoySettings:
    """The mesh proxy's admin API; no admin URL means no Envoy in this pod."""

    admin_url: str | None = None
    #: Istio's pilot-agent, told to exit after Envoy is released (localhost only).
    pilot_agent_url: str | None = None
    drain_inbound: bool = True
    quit_after_release: bool = True
    request_timeout_seconds: float = 1.0


Unconfirmed = Literal["deletion", "restart"]


@dataclass(frozen=True)
class KubernetesSettings:
    """The API server: confirm the deletion, watch our EndpointSlices, post Events."""

    #: Resolved at load: on in a pod (KUBERNETES_SERVICE_HOST) or with a kubeconfig, unless off.
    enabled: bool = False
    #: A kubeconfig for local runs; in a pod the service account is used.
    kubeconfig: str | None = None
    request_timeout_seconds: float = 2.0
    #: A watch silent this long is replaced by a fresh list and watch: a dead connection is silent.
    watch_inactivity_seconds: float = 10.0
    #: What a hook means when the API cannot say (unreachable, forbidden): trust the token and
    #: shut down (degraded), or treat it as one container's restart (no deregistration).
    when_unconfirmed: Unconfirmed = "deletion"
    #: Post Kubernetes Events on the pod for milestones and warnings.
    events: bool = True


@dataclass(frozen=True)
class Settings:
    """Everything the agent needs, validated."""

    containers: tuple[ContainerSpec, ...]
    #: Groups of non-proxy containers, released in this order; the proxy always goes last.
    release_order: tuple[tuple[str, ...], ...]
    pod: PodIdentity = field(default_factory=PodIdentity)
    server: ServerSettings = field(default_factory=ServerSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    phases: PhaseSettings = field(default_factory=PhaseSettings)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)

    @property
    def proxy(self) -> ContainerSpec | None:
        """The proxy container, if the pod has one."""
        return next((c for c in self.containers if c.role == "proxy"), None)

    def container(self, name: str) -> ContainerSpec | None:
        """The container of that name, if the plan knows it."""
        return next((c for c in self.containers if c.name == name), None)


def _containers(root: Section) -> tuple[ContainerSpec, ...]:
    entries = root.items("containers")
    if not entries:
        raise ConfigError("containers: expected at least one container whose hook we answer")
    specs: list[ContainerSpec] = []
    for index, entry in enumerate(entries):
        sec = Section(entry, f"containers[{index}]")
        name = sec.text("name", None) or ""
        if not _DNS_LABEL.match(name):
            raise ConfigError(
                f"{sec.key('name')}: expected a container name (DNS label), got {show(name)}"
            )
        role = sec.choice("role", "app", ("app", "proxy"))
        ports = tuple(port(p, f"{sec.key('ports')}[{i}]") for i, p in enumerate(sec.items("ports")))
        names = tuple(str(n) for n in sec.items("process_names"))
        sec.finish()
        if any(s.name == name for s in specs):
            raise ConfigError(f"{sec.key('name')}: container {name!r} is listed twice")
        specs.append(ContainerSpec(name, "proxy" if role == "proxy" else "app", ports, names))
    if sum(s.role == "proxy" for s in specs) > 1:
        raise ConfigError("containers: expected at most one container with role proxy")
    if all(s.role == "proxy" for s in specs):
        raise ConfigError("containers: expected at least one container with role app")
    return tuple(specs)


def _release_order(root: Section, specs: tuple[ContainerSpec, ...]) -> tuple[tuple[str, ...], ...]:
    apps = [s.name for s in specs if s.role == "app"]
    groups = root.items("release_order")
    if not groups:
        return (tuple(apps),)
    seen: list[str] = []
    result: list[tuple[str, ...]] = []
    for index, group in enumerate(groups):
        key = f"release_order[{index}]"
        if not isinstance(group, list) or not group:
            raise ConfigError(
                f"{key}: expected a non-empty list of container names, got {show(group)}"
            )
        for name in group:
            if name not in apps:
                raise ConfigError(
                    f"{key}: {name!r} is not an app container (apps: {', '.join(apps)})"
                )
            if name in seen:
                raise ConfigError(f"{key}: {name!r} is already in an earlier group")
            seen.append(name)
        result.append(tuple(group))
    missing = [a for a in apps if a not in seen]
    if missing:
        raise ConfigError(
            f"release_order: every app container must be listed; missing {', '.join(missing)}"
        )
    return tuple(result)


def _networks(sec: Section, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    result = []
    for index, value in enumerate(sec.items(name)):
        try:
            result.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise ConfigError(
                f"{sec.key(name)}[{index}]: expected an IP address or CIDR, got {show(value)}"
            ) from None
    return tuple(result)


def _ip_list(text: str, key: str) -> tuple[str, ...]:
    ips = tuple(part.strip() for part in text.split(",") if part.strip())
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(
                f"{key}: expected IP addresses separated by commas, got {show(text)}"
            ) from None
    return ips


def _pod(sec: Section, environ: Mapping[str, str]) -> PodIdentity:
    ips_text = (
        environ.get("POD_IPS") or environ.get("POD_IP") or ",".join(map(str, sec.items("ips")))
    )
    host_ip = environ.get("HOST_IP") or sec.text("host_ip", "") or ""
    if host_ip:
        _ip_list(host_ip, "HOST_IP")
    pod = PodIdentity(
        name=environ.get("POD_NAME") or sec.text("name", "") or "",
        namespace=environ.get("POD_NAMESPACE") or sec.text("namespace", "") or "",
        uid=environ.get("POD_UID") or sec.text("uid", "") or "",
        ips=_ip_list(ips_text, "POD_IPS"),
        host_ip=host_ip,
    )
    sec.finish()
    return pod


def _token(sec: Section, environ: Mapping[str, str]) -> Secret | None:
    token = environ.get("SHUTDOWN_COORDINATOR_TOKEN") or sec.text("token", None)
    token_file = sec.text("token_file", None)
    if not token and token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(
                f"{sec.key('token_file')}: cannot read {token_file!r}: {e.strerror}"
            ) from None
    if token is not None and len(token) < 16:
        raise ConfigError(f"{sec.key('token')}: expected at least 16 characters, got {len(token)}")
    return Secret(token) if token else None


def _server(sec: Section, environ: Mapping[str, str]) -> ServerSettings:
    server = ServerSettings(
        port=sec.port("port", 15120),
        host=sec.text("host", "") or "",
        token=_token(sec, environ),
        allow_unauthenticated=sec.boolean("allow_unauthenticated", False),
        mode="native"
        if sec.choice("mode", "classic", ("classic", "native")) == "native"
        else "classic",
        idle_sigterm_linger_seconds=sec.number("idle_sigterm_linger_seconds", 5.0),
    )
    if 15000 <= server.port <= 15099:
        raise ConfigError(
            f"server.port: expected a port outside Istio's 15000-15099, got {server.port}"
        )
    if server.token is None and not server.allow_unauthenticated:
        raise ConfigError(
            "server.token: required (set SHUTDOWN_COORDINATOR_TOKEN or server.token_file), "
            "or set server.allow_unauthenticated: true for a local experiment"
        )
    sec.finish()
    return server


def _budget(sec: Section, environ: Mapping[str, str]) -> BudgetSettings:
    grace_text = environ.get("TERMINATION_GRACE_PERIOD_SECONDS")
    grace_default = 30.0
    if grace_text:
        try:
            grace_default = float(grace_text)
        except ValueError:
            shown = show(grace_text)
            raise ConfigError(
                f"TERMINATION_GRACE_PERIOD_SECONDS: expected a number of seconds, got {shown}"
            ) from None
    budget = BudgetSettings(
        grace_seconds=sec.number("grace_seconds", grace_default, minimum=1.0),
        sigterm_reserve_seconds=sec.number("sigterm_reserve_seconds", 5.0),
        answer_margin_seconds=sec.number("answer_margin_seconds", 1.0),
    )
    sec.finish()
    return budget


def _phases(sec: Section) -> PhaseSettings:
    phases = PhaseSettings(
        unroute_fallback_delay_seconds=sec.number("unroute_fallback_delay_seconds", 3.0),
        unroute_max_seconds=sec.number("unroute_max_seconds", 60.0),
        quiet_window_seconds=sec.number("quiet_window_seconds", 2.0, minimum=0.05),
        quiesce_min_seconds=sec.number("quiesce_min_seconds", 1.0),
        quiesce_max_seconds=sec.number("quiesce_max_seconds", 30.0),
        drain_max_seconds=sec.number("drain_max_seconds", 60.0),
        exit_wait_max_seconds=sec.number("exit_wait_max_seconds", 30.0),
        proxy_drain_max_seconds=sec.number("proxy_drain_max_seconds", 10.0),
    )
    if phases.quiesce_min_seconds > phases.quiesce_max_seconds:
        raise ConfigError(
            f"phases.quiesce_min_seconds: expected at most quiesce_max_seconds "
            f"({phases.quiesce_max_seconds}), got {phases.quiesce_min_seconds}"
        )
    sec.finish()
    return phases


def _traffic(sec: Section) -> TrafficSettings:
    traffic = TrafficSettings(
        sample_interval_seconds=sec.number("sample_interval_seconds", 0.25, minimum=0.01),
        source=sec.choice("source", "auto", ("auto", "netlink", "proc")),  # type: ignore[arg-type]
        ignore_peers=_networks(sec, "ignore_peers"),
    )
    sec.finish()
    return traffic


def _envoy(sec: Section) -> EnvoySettings:
    envoy = EnvoySettings(
        admin_url=url(sec.text("admin_url", None), sec.key("admin_url")),
        pilot_agent_url=url(sec.text("pilot_agent_url", None), sec.key("pilot_agent_url")),
        drain_inbound=sec.boolean("drain_inbound", True),
        quit_after_release=sec.boolean("quit_after_release", True),
        request_timeout_seconds=sec.number("request_timeout_seconds", 1.0, minimum=0.05),
    )
    sec.finish()
    return envoy


def _kubernetes(sec: Section, environ: Mapping[str, str]) -> KubernetesSettings:
    raw = sec.raw("enabled", "auto")
    if isinstance(raw, bool):  # YAML reads a bare true/false as a boolean
        enabled = "true" if raw else "false"
    else:
        enabled = sec.choice("enabled", "auto", ("auto", "true", "false"))
    kubeconfig = sec.text("kubeconfig", None) or environ.get("KUBECONFIG") or None
    if enabled == "auto":
        on = bool(environ.get("KUBERNETES_SERVICE_HOST") or kubeconfig)
    else:
        on = enabled == "true"
    kube = KubernetesSettings(
        enabled=on,
        kubeconfig=kubeconfig,
        request_timeout_seconds=sec.number("request_timeout_seconds", 2.0, minimum=0.05),
        watch_inactivity_seconds=sec.number("watch_inactivity_seconds", 10.0, minimum=0.1),
        when_unconfirmed="restart"
        if sec.choice("when_unconfirmed", "deletion", ("deletion", "restart")) == "restart"
        else "deletion",
        events=sec.boolean("events", True),
    )
    sec.finish()
    return kube


def from_mapping(data: object, environ: Mapping[str, str]) -> Settings:
    """Build validated settings from a parsed settings file and the environment."""
    root = Section(data, "")
    containers = _containers(root)
    settings = Settings(
        containers=containers,
        release_order=_release_order(root, containers),
        pod=_pod(root.section("pod"), environ),
        server=_server(root.section("server"), environ),
        budget=_budget(root.section("budget"), environ),
        phases=_phases(root.section("phases")),
        traffic=_traffic(root.section("traffic")),
        envoy=_envoy(root.section("envoy")),
        kubernetes=_kubernetes(root.section("kubernetes"), environ),
    )
    root.finish()
    if settings.kubernetes.enabled and not (settings.pod.name and settings.pod.namespace):
        raise ConfigError(
            "kubernetes: the API is on, so POD_NAME and POD_NAMESPACE (downward API) or "
            "pod.name and pod.namespace are required; set kubernetes.enabled: false to go without"
        )
    return settings


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file (YAML) at `path`, if any, and the environment."""
    env = os.environ if environ is None else environ
    data: object = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"settings file {path!r}: cannot read it: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"settings file {path!r}: not valid YAML: {e}") from None
    return from_mapping(data, env)
