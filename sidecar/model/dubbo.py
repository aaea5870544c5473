"""Dubbo's provider names in ZooKeeper: URL-encoded provider URLs, and the override disabling one.

Dubbo writes a provider as `{root}/{interface}/providers/{URL.encode(url.toFullString())}`,
encoded as java.net.URLEncoder does (docs/registries/zookeeper.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urlencode, urlsplit


def java_url_encode(text: str) -> str:
    """`text` as Dubbo's URL.encode (java.net.URLEncoder, UTF-8) writes it into a node name."""
    return quote_plus(text, safe="*").replace("~", "%7E")


def canonical_host(host: str) -> str:
    """A host as compared: an IP in its normal form (no brackets), a name in lower case."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower()


@dataclass(frozen=True)
class Provider:
    """One provider node of ours: where it is, its raw name, and what its URL says."""

    service: str
    raw: str
    #: host:port as the URL writes it (an IPv6 host in brackets).
    address: str
    interface: str
    params: dict[str, str]

    @property
    def path(self) -> str:
        """The node's path."""
        return f"{self.service}/providers/{self.raw}"


def parse_provider(service: str, raw: str) -> tuple[Provider, str, int] | None:
    """A provider node's name, decoded: the provider, its host and port; None if not a URL."""
    try:
        url = urlsplit(unquote_plus(raw))
        port = url.port
    except ValueError:
        return None
    if not url.scheme or url.hostname is None or port is None:
        return None
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    interface = params.get("interface") or url.path.strip("/")
    provider = Provider(service, raw, url.netloc.rpartition("@")[2], interface, params)
    return provider, url.hostname, port


def override_url(provider: Provider) -> str:
    """Dubbo's override disabling one provider (its address), scoped by its group and version."""
    query = {"category": "configurators", "disabled": "true", "dynamic": "true"}
    query |= {k: provider.params[k] for k in ("group", "version") if provider.params.get(k)}
    return f"override://{provider.address}/{provider.interface}?{urlencode(query)}"
