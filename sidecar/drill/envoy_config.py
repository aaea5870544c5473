"""Envoy bootstrap documents for the drill: a pod's inbound sidecar listener in front of its app."""

from __future__ import annotations

from typing import Any

_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def sidecar(*, host: str, listen_port: int, admin_port: int, app_port: int) -> dict[str, Any]:
    """An inbound listener (traffic_direction INBOUND, so `drain_listeners?inboundonly` sees it)."""
    return {
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "traffic_direction": "INBOUND",
                    "address": _address(host, listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": _HCM,
                                        "stat_prefix": "inbound",
                                        "route_config": {
                                            "name": "inbound",
                                            "virtual_hosts": [
                                                {
                                                    "name": "app",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "app"},
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": _ROUTER},
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _address(host, app_port)}}]}
                        ],
                    },
                }
            ],
        },
    }


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
