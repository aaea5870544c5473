"""Envoy bootstrap documents for the drill: each pod's inbound sidecar, and the ingress."""

from __future__ import annotations

from typing import Any

_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _listener(name: str, direction: str, host: str, port: int, cluster: str) -> dict[str, Any]:
    """An HTTP listener that routes everything to one cluster."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
    manager = {
        "@type": _HCM,
        "stat_prefix": name,
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": cluster, "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "name": name,
        "traffic_direction": direction,
        "address": _address(host, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _endpoints(cluster: str, addresses: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "cluster_name": cluster,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(h, p)}} for h, p in addresses]}
        ],
    }


def sidecar(
    *, host: str, listen_port: int, admin_port: int, app_port: int, app_host: str | None = None
) -> dict[str, Any]:
    """An inbound listener (traffic_direction INBOUND, so `drain_listeners?inboundonly` sees it).

    The app is reached at `app_host` (default: `host`): in a pod, over its 127.0.0.1.
    """
    return {
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [_listener("inbound", "INBOUND", host, listen_port, "app")],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": _endpoints("app", [(app_host or host, app_port)]),
                }
            ],
        },
    }


def ingress(*, listen_port: int, admin_port: int, eds_path: str) -> dict[str, Any]:
    """The ingress in front of every pod; its endpoints come from a file it watches (EDS).

    The file is replaced by a move whenever the data plane applies a change: Envoy reloads a
    path config source only on moves, which are atomic.
    """
    eds_source = {"path_config_source": {"path": eds_path}, "resource_api_version": "V3"}
    return {
        "node": {"id": "ingress", "cluster": "drill"},
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [_listener("ingress", "OUTBOUND", "127.0.0.1", listen_port, "pods")],
            "clusters": [
                {
                    "name": "pods",
                    "type": "EDS",
                    "connect_timeout": "1s",
                    "eds_cluster_config": {"eds_config": eds_source},
                }
            ],
        },
    }


def eds_response(version: int, addresses: list[tuple[str, int]]) -> dict[str, Any]:
    """The file the ingress reads: a DiscoveryResponse with one ClusterLoadAssignment."""
    assignment = {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        **_endpoints("pods", addresses),
    }
    return {"version_info": str(version), "resources": [assignment]}


def command(envoy_binary: str, config_path: str) -> list[str]:
    """The command line: drain closes connections at once, as Istio runs it; no hot restart."""
    return [
        envoy_binary,
        "-c",
        config_path,
        "--drain-strategy",
        "immediate",
        "--drain-time-s",
        "60",
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "-l",
        "warning",
    ]
