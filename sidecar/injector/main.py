"""`shutdown-coordinator injector`: the webhook's composition root and its shutdown sequence."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from sidecar import logs
from sidecar.adapters.kube import InjectorApi
from sidecar.errors import ConfigError
from sidecar.injector.guarantee import Guarantee
from sidecar.injector.namespaces import (
    LOOKUP_SECONDS,
    REQUEST_SECONDS,
    NamespaceLookupError,
    Namespaces,
    selected_by_any,
    token_from_text,
)
from sidecar.injector.server import Webhook
from sidecar.injector.tls import CertificateError, ServingCertificate
from sidecar.model.injection import Injection, plan_patch
from sidecar.model.injection_settings import template_from
from sidecar.settings import yamlfile
from sidecar.settings.constraints import clip
from sidecar.settings.schema import KubernetesSettings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Mapping

    from sidecar.settings.injection import InjectionTemplate

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
#: A template is a few hundred bytes; a ConfigMap holds at most 1 MiB.
TEMPLATE_MAX_BYTES = 1024 * 1024
#: After SIGTERM the injector stays unready but serving this long by default: the endpoints
#: controller takes the pod out of the Service, and the API server's calls move to the other
#: replica, instead of failing (and, with failurePolicy Ignore, creating pods uninjected).
SHUTDOWN_DELAY_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `injector` command's options."""
    folder = "/etc/shutdown-coordinator"
    parser.add_argument("--cert", type=Path, default=Path(f"{folder}/tls/tls.crt"))
    parser.add_argument("--key", type=Path, default=Path(f"{folder}/tls/tls.key"))
    parser.add_argument("--template", help="injection template (YAML, InjectionTemplate keys)")
    parser.add_argument(
        "--token-file",
        help="one hook token for every namespace, whose token Secrets must all hold it "
        "(default: each namespace's own Secret, created when absent)",
    )
    parser.add_argument(
        "--kubeconfig", help="for a run outside the cluster (default: the service account)"
    )
    parser.add_argument("--host", default="", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--shutdown-delay-seconds",
        type=float,
        default=SHUTDOWN_DELAY_SECONDS,
        help="after SIGTERM, keep answering while unready this long",
    )
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")


def run(args: argparse.Namespace, err: TextIO = sys.stderr) -> int:
    """Serve until SIGTERM (or SIGINT); the exit code says how it ended."""
    logs.configure(json=None if args.log_format == "auto" else args.log_format == "json")
    try:
        template = read_template(args.template)
        token = read_token(args.token_file)
        certificate = ServingCertificate(args.cert, args.key)
    except (ConfigError, CertificateError) as e:
        err.write(f"shutdown-coordinator injector: {e}\n")
        return EXIT_CONFIG
    if not 0 <= args.shutdown_delay_seconds <= 60 or not 0 <= args.port <= 65535:
        err.write(
            "shutdown-coordinator injector: --port or --shutdown-delay-seconds out of range\n"
        )
        return EXIT_CONFIG
    namespaces, api = None, None
    if args.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        settings = KubernetesSettings(
            enabled=True, kubeconfig=args.kubeconfig, request_timeout_seconds=REQUEST_SECONDS
        )
        api = InjectorApi(settings)
        namespaces = Namespaces(api, template)
    elif token is None:
        log.warning("injector_without_token", effect="every pod is left alone: no hook token")
    guarantee = Guarantee(
        token,
        token_of=(lambda ns: namespaces.token(ns, create=False)) if namespaces else None,
        agent_port=template.port,
        own_namespace=os.environ.get("POD_NAMESPACE") or "shutdown-coordinator-system",
        events=api,
    )
    webhook = Webhook(
        planner(template, token, namespaces),
        certificate,
        host=args.host,
        port=args.port,
        guarantee=guarantee,
    )
    # What start-up made (modules, the template) lives as long as the process: kept out of the
    # collector's walks, a full collection pauses ~1 ms instead of ~20 ms (measured).
    gc.freeze()
    try:
        asyncio.run(serve(webhook, namespaces, shutdown_delay_seconds=args.shutdown_delay_seconds))
    except OSError as e:
        err.write(f"shutdown-coordinator injector: cannot serve: {e}\n")
        return EXIT_FAILED
    finally:
        gc.unfreeze()  # a caller in the same process (a test) gets its collector back
    return EXIT_OK


def planner(
    template: InjectionTemplate, token: str | None, namespaces: Namespaces | None = None
) -> Callable[..., Awaitable[Injection]]:
    """The webhook's planner: plan_patch with the hook token, then the Service check.

    The token is `token` (--token-file) when given, else the namespace's own Secret, created
    when absent unless the review is a dry run. `dry_run` is True unless the caller says
    otherwise, so nothing is ever created for a review that might be one. Without `namespaces`
    (no API), nothing is looked up.
    """

    async def plan(pod: Mapping[str, Any], namespace: str, *, dry_run: bool = True) -> Injection:
        deadline = asyncio.get_running_loop().time() + LOOKUP_SECONDS
        hook_token = token
        if hook_token is None and namespaces is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    hook_token = await namespaces.token(namespace, create=not dry_run)
            except NamespaceLookupError as e:
                return Injection(refused=f"no hook token: {e}")
            except TimeoutError:
                return Injection(refused=f"no hook token: no answer within {LOOKUP_SECONDS:g} s")
        injection = plan_patch(pod, template, namespace=namespace, token=hook_token)
        if injection.refused is not None or namespaces is None:
            return injection
        warning = await _service_warning(namespaces, pod, namespace, deadline)
        if warning is None:
            return injection
        return dataclasses.replace(injection, warnings=[*injection.warnings, warning])

    return plan


async def _service_warning(
    namespaces: Namespaces, pod: Mapping[str, Any], namespace: str, deadline: float
) -> str | None:
    """A warning when no Service of the namespace selects the pod, or when none could be read."""
    try:
        async with asyncio.timeout_at(deadline):
            services = await namespaces.services(namespace)
    except NamespaceLookupError as e:
        return f"{_UNCHECKED}: {e}"
    except TimeoutError:
        return f"{_UNCHECKED}: no answer within {LOOKUP_SECONDS:g} s"
    if selected_by_any(pod, services):
        return None
    return f"no Service in {namespace} selects this pod: no rotation to wait for at shutdown"


_UNCHECKED = "could not check for a Service selecting this pod"


async def serve(
    webhook: Webhook, namespaces: Namespaces | None = None, *, shutdown_delay_seconds: float
) -> None:
    """Serve until SIGTERM or SIGINT, then stop as `serve_until` says; close the API last."""
    loop = asyncio.get_running_loop()
    sigterm, sigint = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, sigterm.set)
    loop.add_signal_handler(signal.SIGINT, sigint.set)
    try:
        await serve_until(webhook, sigterm, sigint, shutdown_delay_seconds=shutdown_delay_seconds)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
        if namespaces is not None:
            await namespaces.close()


async def serve_until(
    webhook: Webhook,
    sigterm: asyncio.Event,
    sigint: asyncio.Event,
    *,
    shutdown_delay_seconds: float,
) -> None:
    """Start, wait for a signal, and stop in order; SIGINT cuts the wait short."""
    await webhook.start()
    try:
        waiters = [asyncio.ensure_future(e.wait()) for e in (sigterm, sigint)]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if not sigint.is_set():
            # 1. Unready, still answering: the Service drops this pod, the API server moves on.
            webhook.unready()
            log.info("injector_draining", seconds=shutdown_delay_seconds)
            # 2. Give the endpoints time to change; SIGINT (a local run) does not wait.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(shutdown_delay_seconds):
                    await sigint.wait()
    finally:
        # 3. Close the listener, let reviews in flight finish (bounded), close connections.
        await webhook.stop()
        log.info("injector_stopped", reason="interrupted" if sigint.is_set() else "sigterm")


def read_template(path: str | None) -> InjectionTemplate:
    """The template at `path` (YAML), or the defaults; ConfigError lists every bad key."""
    data: Any = {}
    if path:
        source = f"template {clip(repr(path), 200)}"
        try:
            text = yamlfile.read_text(path, TEMPLATE_MAX_BYTES, " (a ConfigMap's limit)")
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
        data = yamlfile.parse(text, source) or {}
    return template_from(data)


def read_token(path: str | None) -> str | None:
    """The hook token in the file at `path`, checked by the agent's own rule; None without one."""
    if not path:
        return None
    source = f"--token-file {clip(repr(path), 200)}"
    try:
        text = yamlfile.read_text(path, 4096)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    return token_from_text(text, source)
