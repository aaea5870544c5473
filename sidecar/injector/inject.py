"""`shutdown-coordinator inject -f FILE|-`: workloads in YAML, injected, comments and order kept."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, get_type_hints

from sidecar.errors import ConfigError
from sidecar.model.injection import plan_patch
from sidecar.model.injection_checks import shape_problem
from sidecar.model.injection_settings import template_from
from sidecar.settings import ServerSettings, yamlfile
from sidecar.settings.constraints import clip
from sidecar.settings.reader import INVALID, Reader

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from sidecar.settings.injection import InjectionTemplate

EXIT_OK = 0
EXIT_BAD_INPUT = 2
#: Manifests and templates are read up to this size (far above any real one).
INPUT_MAX_BYTES = 16 * 1024 * 1024
#: Where each kind keeps its pod template.
POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class BadInputError(Exception):
    """The input cannot be injected; the message names the document."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The inject command's arguments."""
    parser.add_argument("-f", "--filename", required=True, help="YAML manifests; - for stdin")
    parser.add_argument(
        "--token-file",
        help="file holding the namespace's hook token (the Secret's value); "
        "default: $SHUTDOWN_COORDINATOR_TOKEN",
    )
    parser.add_argument("--template", help="injection template (YAML, InjectionTemplate keys)")
    parser.add_argument("--image", help="the agent's image (overrides the template)")
    parser.add_argument("--mode", choices=("classic", "native"), help="overrides the template")


def run(args: argparse.Namespace) -> int:
    """Inject every workload of the input and print the result; warnings go to stderr."""
    try:
        template = _template(args)
        token = _token(args.token_file)
        text = _read(args.filename)
        print(inject_text(text, template, token, warn=_warn), end="")  # noqa: T201 - the output
    except (BadInputError, ConfigError) as e:
        print(f"shutdown-coordinator inject: {e}", file=sys.stderr)  # noqa: T201 - the error
        return EXIT_BAD_INPUT
    return EXIT_OK


def _warn(text: str) -> None:
    print(f"shutdown-coordinator inject: {text}", file=sys.stderr)  # noqa: T201 - a warning


def inject_text(text: str, template: InjectionTemplate, token: str, *, warn: Any = _warn) -> str:
    """The documents of `text` with every pod template injected, as YAML."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - only this command needs it, not the agent
    from ruamel.yaml.compat import StringIO  # noqa: PLC0415 - same

    yaml = YAML()  # round-trip: comments, key order and quotes are kept
    yaml.preserve_quotes = True
    # One indentation for the output (ruamel keeps no per-file style): lists indented under
    # their key, as in the Kubernetes docs.
    yaml.indent(mapping=2, sequence=4, offset=2)
    try:
        documents = [d for d in yaml.load_all(text) if d is not None]
    except Exception as e:  # ruamel raises several families; each is bad input
        problem = clip(" ".join(str(e).split()), 200)
        raise BadInputError(f"the input is no valid YAML: {problem}") from None
    for number, document in enumerate(documents, start=1):
        for name, pod in _pods(document, f"document {number}"):
            _inject(pod, template, token, name, warn)
    out = StringIO()
    yaml.dump_all(documents, out)
    result: str = out.getvalue()
    return result


def _pods(document: object, where: str) -> Iterator[tuple[str, Any]]:
    """(a name for messages, the pod or pod template) of each workload in the document."""
    if not isinstance(document, dict):
        return
    kind = document.get("kind")
    if kind == "List":
        items = document.get("items", [])
        if not isinstance(items, list):
            raise BadInputError(f"{where} (List): items: expected a list")
        for index, item in enumerate(items):
            yield from _pods(item, f"{where} item {index}")
        return
    if kind not in POD_PATHS:
        return  # other kinds pass through unchanged
    metadata = document.get("metadata") or {}
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    namespace = metadata.get("namespace", "") if isinstance(metadata, dict) else ""
    label = f"{where} ({kind} {namespace + '/' if namespace else ''}{name})"
    pod: Any = document
    for key in POD_PATHS[kind]:
        pod = pod.get(key) if isinstance(pod, dict) else None
    if not isinstance(pod, dict):
        raise BadInputError(f"{label}: {'.'.join(POD_PATHS[kind])}: expected a pod template")
    problem = shape_problem(pod)
    if problem:
        raise BadInputError(f"{label}: {problem}")
    yield label, pod


def _inject(pod: Any, template: InjectionTemplate, token: str, name: str, warn: Any) -> None:
    """Apply plan_patch's operations in place, so the round-trip structure keeps its comments."""
    plan = plan_patch(_plain(pod), template, token=token)
    for text in plan.warnings:
        warn(f"{name}: {text}")
    if plan.refused:
        warn(f"{name}: not injected: {plan.refused}")
    for op in plan.patch:
        _add(pod, op["path"], op["value"])


def _plain(value: Any) -> Any:
    """Round-trip maps and sequences as plain dicts and lists (the model's input)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _add(target: Any, path: str, value: Any) -> None:
    """RFC 6902 `add` (the only operation plan_patch emits) on the round-trip structure."""
    keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target.insert(len(target) if last == "-" else int(last), value)
    else:
        target[last] = value


def _read(filename: str) -> str:
    if filename == "-":
        data = sys.stdin.buffer.read(INPUT_MAX_BYTES + 1)
        if len(data) > INPUT_MAX_BYTES:
            raise BadInputError(f"stdin: expected at most {INPUT_MAX_BYTES} bytes, got more")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInputError(f"stdin: expected UTF-8 text, got byte at {e.start}") from None
    try:
        return yamlfile.read_text(filename, INPUT_MAX_BYTES)
    except ValueError as e:
        raise BadInputError(f"{clip(repr(filename), 200)}: {e}") from None


def _token(path: str | None) -> str:
    """The hook token, checked by the agent's own rules for it."""
    if path:
        try:
            text, source = yamlfile.read_text(path, 4096), "--token-file"
        except ValueError as e:
            raise BadInputError(f"--token-file {clip(repr(path), 200)}: {e}") from None
    else:
        text, source = (
            os.environ.get("SHUTDOWN_COORDINATOR_TOKEN", ""),
            "SHUTDOWN_COORDINATOR_TOKEN",
        )
    if not text.strip():
        raise BadInputError(
            "no hook token: pass --token-file (the value of the namespace's token Secret) "
            "or set SHUTDOWN_COORDINATOR_TOKEN"
        )
    reader = Reader({})
    hint = get_type_hints(ServerSettings, include_extras=True)["token"]
    token = reader.read(hint, text, source)
    if token is INVALID or reader.errors:
        raise BadInputError(next(iter(reader.errors.values())))
    return str(token)


def _template(args: argparse.Namespace) -> InjectionTemplate:
    data: Any = {}
    if args.template:
        try:
            text = yamlfile.read_text(args.template, INPUT_MAX_BYTES)
        except ValueError as e:
            raise BadInputError(f"--template {clip(repr(args.template), 200)}: {e}") from None
        data = yamlfile.parse(text, f"template {clip(repr(args.template), 200)}") or {}
    if isinstance(data, dict):
        data = {**data, **{k: getattr(args, k) for k in ("image", "mode") if getattr(args, k)}}
    try:
        return template_from(data)
    except ConfigError as e:
        raise BadInputError(str(e)) from None
