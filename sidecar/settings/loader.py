"""Settings from a YAML file, the environment and the downward API, every error reported at once."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import yaml

from sidecar.errors import ConfigError
from sidecar.settings import crossfield
from sidecar.settings.reader import INVALID, Reader
from sidecar.settings.schema import ServerSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

_SWITCH: dict[object, bool | None] = {
    "auto": None,
    True: True,
    "true": True,
    False: False,
    "false": False,
}


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file (YAML) at `path` and the environment."""
    env = os.environ if environ is None else environ
    if not path:
        raise ConfigError("no settings file given: pass -c FILE or set SHUTDOWN_COORDINATOR_CONFIG")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"settings file {path!r}: cannot read it: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"settings file {path!r}: not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"settings file {path!r} is empty: expected at least `containers:`")
    return from_mapping(data, env)


def from_mapping(data: object, environ: Mapping[str, str]) -> Settings:
    """Validated settings from a parsed settings file and the environment.

    Raises one ConfigError listing every error, one per line.
    """
    reader = Reader(environ)
    data = _resolve_kubernetes_switch(data, environ, reader)
    settings = reader.read(Settings, data, "")
    if settings is not INVALID:
        settings = _read_token_file(settings, reader)
    if settings is not INVALID:
        for rule in crossfield.RULES:
            for key, message in rule(settings).items():
                if key not in reader.failed:
                    reader.errors.setdefault(key, f"{key}: {message}")
    if reader.errors:
        raise ConfigError("\n".join(reader.errors.values()))
    return _fill_release_order(settings)


def _resolve_kubernetes_switch(data: object, environ: Mapping[str, str], reader: Reader) -> object:
    """`kubernetes.enabled: auto` (the default) is on in a pod or with a kubeconfig."""
    if not isinstance(data, dict) or not isinstance(data.get("kubernetes", {}) or {}, dict):
        return data
    section: dict[Any, Any] = dict(data.get("kubernetes") or {})
    switch = section.get("enabled")
    switch = "auto" if switch is None else switch
    if not isinstance(switch, str | bool) or switch not in _SWITCH:
        reader.expected("kubernetes.enabled", "one of auto, true, false", switch)
        reader.failed.add("kubernetes.enabled")
        section.pop("enabled")
    else:
        on = _SWITCH[switch]
        if on is None:
            kubeconfig = section.get("kubeconfig") or environ.get("KUBECONFIG")
            on = bool(environ.get("KUBERNETES_SERVICE_HOST") or kubeconfig)
        section["enabled"] = on
    return {**data, "kubernetes": section}


def _read_token_file(settings: Settings, reader: Reader) -> Any:
    """The token from `server.token_file` when neither the file nor the environment gave one."""
    server = settings.server
    if server.token is not None or not server.token_file:
        return settings
    key = "server.token_file"
    try:
        text = Path(server.token_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        reader.failed.add("server.token")
        return reader.error(key, f"cannot read {server.token_file!r}: {e.strerror}")
    except UnicodeDecodeError:
        reader.failed.add("server.token")
        return reader.expected(key, "a file of text", server.token_file)
    token = reader.read(get_type_hints(ServerSettings, include_extras=True)["token"], text, key)
    if token is INVALID:
        reader.failed.add("server.token")
        return INVALID
    return dataclasses.replace(settings, server=dataclasses.replace(server, token=token))


def _fill_release_order(settings: Settings) -> Settings:
    """No release order given: every app container in one group."""
    if settings.release_order:
        return settings
    apps = tuple(c.name for c in settings.containers if c.role == "app")
    return dataclasses.replace(settings, release_order=(apps,))
