"""Registry back ends: each implements sidecar.shutdown.registries.Registry with its own client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.adapters.registries.consul import ConsulRegistry
from sidecar.adapters.registries.etcd import EtcdRegistry
from sidecar.adapters.registries.eureka import EurekaRegistry
from sidecar.adapters.registries.http import HttpRegistry
from sidecar.adapters.registries.nacos import NacosRegistry
from sidecar.adapters.registries.zookeeper import ZookeeperRegistry
from sidecar.settings.registries import HttpRegistrySettings
from sidecar.settings.registry_consul import ConsulRegistrySettings
from sidecar.settings.registry_etcd import EtcdRegistrySettings
from sidecar.settings.registry_eureka import EurekaRegistrySettings
from sidecar.settings.registry_nacos import NacosRegistrySettings
from sidecar.settings.registry_zookeeper import ZookeeperRegistrySettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sidecar.adapters.http_action import HttpClient
    from sidecar.model.http_action import Identity
    from sidecar.settings.schema import RegistrySettings

#: Back ends with a client session of their own, closed when the agent stops.
OwnSession = ConsulRegistry | EtcdRegistry | EurekaRegistry | NacosRegistry | ZookeeperRegistry
#: Every back end.
Backend = HttpRegistry | OwnSession


def build_registries(
    settings: Sequence[RegistrySettings], pod: Identity, client: HttpClient
) -> list[Backend]:
    """One back end per configured registry, by its `kind` (raises ConfigError naming the key)."""
    built: list[Backend] = []
    for index, entry in enumerate(settings):
        key = f"registries[{index}]"
        if isinstance(entry, HttpRegistrySettings):
            built.append(HttpRegistry(entry, pod, client, key=key))
        elif isinstance(entry, ConsulRegistrySettings):
            built.append(ConsulRegistry(entry, pod, key=key))
        elif isinstance(entry, EtcdRegistrySettings):
            built.append(EtcdRegistry(entry, pod, key=key))
        elif isinstance(entry, EurekaRegistrySettings):
            built.append(EurekaRegistry(entry, pod, key=key))
        elif isinstance(entry, NacosRegistrySettings):
            built.append(NacosRegistry(entry, pod, key=key))
        elif isinstance(entry, ZookeeperRegistrySettings):
            built.append(ZookeeperRegistry(entry, pod, key=key))
    return built


def own_sessions(registries: Sequence[Backend]) -> list[OwnSession]:
    """The back ends that own a session (the generic one shares the agent's HTTP client)."""
    return [r for r in registries if not isinstance(r, HttpRegistry)]
