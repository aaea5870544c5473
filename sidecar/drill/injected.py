"""The coordinated pod as the injector makes it, and what the kubelet runs from it.

The drill writes the deleted pod as a plain Pod (the app with its port, the Envoy proxy with
its own), without tuning: the agent runs with its defaults. `plan_patch` injects it, as the
webhook and `shutdown-coordinator inject` do; the patch is applied as the API server applies
it. From the injected pod, the drill then plays the kubelet: it runs the agent container's
command with its environment (the downward API's values are what the drill knows of the pod),
fills its volumes (the token Secret, the settings annotation and the labels), and calls each
container's preStop `httpGet` as written (path, port, headers) at the pod IP.

The drill's processes share the machine's file system, so some things differ from a pod, each
written down here: the volumes live in the scenario's folder, so the paths in the command and
the settings file are moved there; the API is the stand-in's, so the agent gets `KUBECONFIG`
where a pod gets `KUBERNETES_SERVICE_HOST` and a service account. When pods have their own
network namespaces (sidecar/drill/network.py) the agent reaches Envoy's admin and pilot-agent
at the injected defaults; when they share loopback, each pod's Envoy admin (and the
pilot-agent stand-in) has its own port, set by the per-pod annotations that move them
(`envoy.admin-url`, `envoy.pilot-agent-url`). Under registry routing the etcd registry is in
the template's `agent_settings`, as a user's injector template gives registries.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.drill.kubelet import Hook
from sidecar.drill.network import LOOPBACK_NODE_IP
from sidecar.drill.objects import NAMESPACE
from sidecar.model.injection import Injection, plan_patch
from sidecar.settings.injection import InjectionTemplate, Mode

if TYPE_CHECKING:
    from sidecar.drill.params import DrillParams

#: The Envoy container's name; the template names it as the proxy to coordinate.
PROXY = "proxy"
#: The agent container's name in the drill's template (the table and JSON call it so).
AGENT = "agent"
#: The node's address on loopback: the kubelet's hooks come from it (HOST_IP, never counted
#: as traffic). In network namespaces it is the bridge's (`Network.node_ip`).
NODE_IP = LOOPBACK_NODE_IP
#: The drill's image names (nothing pulls them: the drill runs the processes itself).
APP_IMAGE = "drill/app:local"
PROXY_IMAGE = "envoyproxy/envoy:local"


def annotations_set(pod: dict[str, Any]) -> dict[str, str]:
    """What the drill set by annotation on its plain pod (after the prefix); the header shows it.

    No tuning: the agent runs with the defaults users get. Only what a shared machine forces
    (each pod's Envoy admin and pilot-agent ports, on loopback) is set.
    """
    prefix = InjectionTemplate().annotation_prefix + "/"
    annotations: dict[str, str] = pod["metadata"].get("annotations", {})
    return {k.removeprefix(prefix): v for k, v in annotations.items() if k.startswith(prefix)}


def template(
    port: int, params: DrillParams, registries: list[dict[str, Any]] | None = None
) -> InjectionTemplate:
    """The drill's injection template: hook port, mode, the proxy's name, shared registries.

    Registries go in `agent_settings`, as a user's injector template gives them.
    """
    mode: Mode = "native" if params.native else "classic"
    shared: dict[str, object] = {"registries": registries} if registries else {}
    return InjectionTemplate(
        port=port, mode=mode, proxy_container=PROXY, container_name=AGENT, agent_settings=shared
    )


@dataclass(frozen=True)
class PlainPod:
    """What the drill knows of the deleted pod before injection."""

    name: str
    uid: str
    ip: str
    app_port: int
    envoy_port: int
    admin_port: int
    pilot_port: int
    #: In its own network namespace, Envoy's admin and pilot-agent are at the usual ports.
    own_netns: bool = False


def plain_pod(pod: PlainPod, params: DrillParams) -> dict[str, Any]:
    """The deleted pod as a user writes it: the app and its Envoy, no tuning.

    With `--native` the proxy is a native sidecar (an init container that always restarts),
    as Istio injects it in that mode.
    """
    prefix = InjectionTemplate().annotation_prefix
    annotations: dict[str, str] = {}
    if not pod.own_netns:
        annotations[f"{prefix}/envoy.admin-url"] = f"http://127.0.0.1:{pod.admin_port}"
        annotations[f"{prefix}/envoy.pilot-agent-url"] = f"http://127.0.0.1:{pod.pilot_port}"
    app = {"name": "app", "image": APP_IMAGE, "ports": [{"containerPort": pod.app_port}]}
    proxy: dict[str, Any] = {
        "name": PROXY,
        "image": PROXY_IMAGE,
        "ports": [{"containerPort": pod.envoy_port}],
    }
    spec: dict[str, Any] = {
        "containers": [app],
        "terminationGracePeriodSeconds": params.grace_seconds,
    }
    if params.native:
        spec["initContainers"] = [{**proxy, "restartPolicy": "Always"}]
    else:
        spec["containers"].append(proxy)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": NAMESPACE,
            "uid": pod.uid,
            "labels": {"app": "web"},
            "annotations": annotations,
        },
        "spec": spec,
    }


class DrillPodError(RuntimeError):
    """plan_patch left the drill's pod alone, or injected what the drill cannot run."""


@dataclass(frozen=True)
class InjectedPod:
    """The plain pod, what plan_patch answered, and the pod with the patch applied."""

    plain: dict[str, Any]
    template: InjectionTemplate
    token: str
    injection: Injection
    pod: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        """The injected pod's spec."""
        spec: dict[str, Any] = self.pod["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        """The container of that name, in `containers` or `initContainers`."""
        for container in [*self.spec["containers"], *self.spec.get("initContainers", [])]:
            if container["name"] == name:
                found: dict[str, Any] = container
                return found
        raise KeyError(name)

    @property
    def agent(self) -> dict[str, Any]:
        """The injected agent container."""
        return self.container(self.template.container_name)

    def is_sidecar(self, name: str) -> bool:
        """A native sidecar: an init container that always restarts (C1)."""
        return self.container(name).get("restartPolicy") == "Always"

    def settings(self) -> dict[str, Any]:
        """The agent's settings as injected: the settings annotation (JSON, read as YAML)."""
        prefix = self.template.annotation_prefix
        annotations = self.pod["metadata"]["annotations"]
        settings: dict[str, Any] = json.loads(annotations[f"{prefix}/settings"])
        return settings

    def hook(self, name: str, pod_ip: str) -> Hook:
        """The kubelet's call for this container's preStop (B9: the pod IP unless a host is set)."""
        prestop = (self.container(name).get("lifecycle") or {}).get("preStop")
        if not prestop:
            return Hook()
        get = prestop["httpGet"]
        scheme = str(get.get("scheme", "HTTP")).lower()
        host = get.get("host") or pod_ip
        headers = tuple((h["name"], h["value"]) for h in get.get("httpHeaders", []))
        return Hook("http", f"{scheme}://{host}:{get['port']}{get['path']}", headers)

    def sidecar_order(self) -> list[str]:
        """Every container the kubelet runs: main containers, then native sidecars in order."""
        mains = [c["name"] for c in self.spec["containers"]]
        inits = self.spec.get("initContainers", [])
        return mains + [c["name"] for c in inits if c.get("restartPolicy") == "Always"]


def inject(plain: dict[str, Any], drill_template: InjectionTemplate, token: str) -> InjectedPod:
    """plan_patch on the plain pod, the patch applied as the API server would."""
    import jsonpatch  # noqa: PLC0415 - a dev dependency, as Envoy is: only the drill needs it

    injection = plan_patch(plain, drill_template, namespace=NAMESPACE, token=token)
    if injection.refused is not None:
        raise DrillPodError(f"plan_patch refused the drill's pod: {injection.refused}")
    pod: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(plain), injection.patch)
    return InjectedPod(plain, drill_template, token, injection, pod)


@dataclass(frozen=True)
class AgentLaunch:
    """How the kubelet starts the agent container: arguments, environment, mounted files."""

    argv: list[str]
    env: dict[str, str]
    settings_path: Path
    settings: dict[str, Any]


def launch(
    injected: InjectedPod,
    folder: Path,
    *,
    ip: str,
    kubeconfig: Path,
    node_ip: str = NODE_IP,
) -> AgentLaunch:
    """Fill the agent's volumes under `folder` and say how to run its container."""
    mounts = _fill_volumes(injected, folder)

    def host_path(path: str) -> str:
        for mount_path, where in mounts.items():
            if path.startswith(mount_path + "/"):
                return str(where / path.removeprefix(mount_path + "/"))
        return path

    # The settings file as the downward API wrote it, its paths moved with the volumes.
    settings = injected.settings()
    server, pod = settings.get("server", {}), settings.get("pod", {})
    for section, key in ((server, "token_file"), (pod, "labels_file")):
        if key in section:
            section[key] = host_path(section[key])
    agent = injected.agent
    if agent["command"] != ["shutdown-coordinator"]:
        raise DrillPodError(f"the drill cannot run the agent command {agent['command']}")
    args = [host_path(a) for a in agent["args"]]
    settings_path = Path(args[args.index("-c") + 1])
    settings_path.write_text(json.dumps(settings), encoding="utf-8")
    downward = {
        "metadata.name": injected.pod["metadata"]["name"],
        "metadata.namespace": NAMESPACE,
        "metadata.uid": injected.pod["metadata"]["uid"],
        "status.podIPs": ip,
        "status.hostIP": node_ip,
    }
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)}
    for variable in agent.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = downward[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    argv = [sys.executable, "-m", "sidecar", *args, "--log-format", "json"]
    return AgentLaunch(argv, env, settings_path, settings)


def _fill_volumes(injected: InjectedPod, folder: Path) -> dict[str, Path]:
    """Write the agent's volumes (the token Secret, the downward-API files); path -> folder."""
    template = injected.template
    secrets = {template.token_secret: {template.token_secret_key: injected.token}}
    metadata = injected.pod["metadata"]
    volumes = {v["name"]: v for v in injected.spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in injected.agent.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        where = folder / "volumes" / volume["name"]
        where.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                (where / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        else:
            for item in volume["downwardAPI"]["items"]:
                value = _field(metadata, item["fieldRef"]["fieldPath"])
                (where / item["path"]).write_text(value, encoding="utf-8")
        mounts[mount["mountPath"]] = where
    return mounts


def _field(metadata: dict[str, Any], path: str) -> str:
    """A downward-API volume file's content, as the kubelet writes it."""
    if path == "metadata.labels":
        labels = metadata.get("labels", {})
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    prefix, suffix = "metadata.annotations['", "']"
    if path.startswith(prefix) and path.endswith(suffix):
        value: str = metadata["annotations"][path[len(prefix) : -len(suffix)]]
        return value
    raise DrillPodError(f"the drill cannot fill the downward-API field {path}")
