"""Settings from a YAML file, the environment and the downward API, every error reported at once."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, get_type_hints

from sidecar.errors import ConfigError
from sidecar.settings import crossfield, yamlfile
from sidecar.settings.constraints import clip
from sidecar.settings.reader import INVALID, Reader
from sidecar.settings.schema import ServerSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A pod's labels are at most 256 KiB in all (the API server's limit on annotations is the same).
LABELS_FILE_MAX_BYTES = 256 * 1024
#: At most this many errors are listed, then how many more there were.
ERRORS_MAX = 50
#: Each error line is at most this long.
LINE_MAX_CHARS = 400
#: A ConfigMap holds at most 1 MiB: a larger settings file is refused unread.
FILE_MAX_BYTES = 1024 * 1024
#: A token is tens of characters; a token file is refused unread beyond this.
TOKEN_FILE_MAX_BYTES = 4096

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
    source = f"settings file {clip(repr(path), 200)}"
    try:
        text = yamlfile.read_text(path, FILE_MAX_BYTES, " (a ConfigMap's limit)")
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    data = yamlfile.parse(text, source)
    if data is None:
        raise ConfigError(f"{source} is empty: expected at least `containers:`")
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
    if settings is not INVALID and settings.pod.labels_file:
        settings = _read_labels_file(settings, reader)
    if settings is not INVALID:
        for rule in crossfield.RULES:
            for key, message in rule(settings).items():
                if key not in reader.failed:
                    reader.errors.setdefault(key, f"{key}: {message}")
    if reader.errors:
        raise ConfigError(_report(list(reader.errors.values())))
    return _fill_release_order(settings)


def _report(errors: list[str]) -> str:
    """The errors, one short line each; beyond ERRORS_MAX only how many more there were."""
    lines = [clip(" ".join(e.split()), LINE_MAX_CHARS) for e in errors[:ERRORS_MAX]]
    if len(errors) > ERRORS_MAX:
        lines.append(f"... and {len(errors) - ERRORS_MAX} more errors")
    return "\n".join(lines)


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


def _read_labels_file(settings: Settings, reader: Reader) -> Any:
    """The pod's labels from a downward-API volume file: one `key="value"` line each."""
    key, path = "pod.labels_file", settings.pod.labels_file
    try:
        text = yamlfile.read_text(path, LABELS_FILE_MAX_BYTES)
    except ValueError as e:
        return reader.error(key, f"{clip(repr(path), 200)}: {e}")
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name, equals, quoted = line.partition("=")
        try:
            value = json.loads(quoted) if equals else None
        except ValueError:
            value = None
        if not isinstance(value, str) or not name:
            return reader.expected(f"{key} line {number}", 'a line key="value"', line)
        labels[name] = value
    pod = dataclasses.replace(settings.pod, labels={**settings.pod.labels, **labels})
    return dataclasses.replace(settings, pod=pod)


def _read_token_file(settings: Settings, reader: Reader) -> Any:
    """The token from `server.token_file` when neither the file nor the environment gave one."""
    server = settings.server
    if server.token is not None or not server.token_file:
        return settings
    key = "server.token_file"
    path = clip(repr(server.token_file), 200)
    try:
        text = yamlfile.read_text(server.token_file, TOKEN_FILE_MAX_BYTES)
    except ValueError as e:
        reader.failed.add("server.token")
        return reader.error(key, f"{path}: {e}")
    if not text.strip():
        reader.failed.add("server.token")
        return reader.error(key, f"{path} is empty: expected the hook token")
    # Trimmed and checked by the token's own rules, as a token from anywhere else.
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
