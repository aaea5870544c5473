"""One lazily opened Kubernetes API client (kubernetes-asyncio) and its bounded request helper."""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import TYPE_CHECKING, Any

from sidecar.errors import ApiError, truncate

if TYPE_CHECKING:
    from sidecar.settings import KubernetesSettings


class Connection:
    """One lazily opened API client and its request helper, shared by the agent and the injector."""

    def __init__(self, settings: KubernetesSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _api(self) -> Any:
        async with self._lock:
            if self._client is None:
                # Imported here, and off the loop: the client is heavy (about 0.25 s of
                # imports), and only a shutdown needs it.
                client, config = await asyncio.to_thread(import_client)
                configuration = client.Configuration()
                try:
                    if self._settings.kubeconfig:
                        await config.load_kube_config(
                            config_file=self._settings.kubeconfig,
                            client_configuration=configuration,
                        )
                    else:
                        config.load_incluster_config(client_configuration=configuration)
                except Exception as e:
                    raise ApiError("configuration", None, f"{type(e).__name__}: {e}") from e
                self._client = client.ApiClient(configuration=configuration)
            return self._client

    async def close(self) -> None:
        """Close the connection pool, if one was opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        stream_seconds: float | None = None,
    ) -> Any:
        """One request through the client's REST layer; JSON in, JSON out, errors as ApiError.

        With `stream_seconds`, the response itself once its headers say 2xx, left open to be
        read for up to that long (a watch).
        """
        api = await self._api()
        timeout = self._settings.request_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                response = await api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params={
                        "Accept": "application/json",
                        "Content-Type": "application/json",
                    },
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=stream_seconds or timeout,
                )
                ok = 200 <= response.status <= 299
                if ok and stream_seconds is not None:
                    return response
                try:
                    text = await response.text(errors="strict" if ok else "replace")
                finally:
                    response.release()
        except TimeoutError:
            raise ApiError(what, None, f"no answer within {timeout} s") from None
        except Exception as e:
            raise ApiError(what, None, f"{type(e).__name__}: {e}") from e
        if not ok:
            raise ApiError(what, response.status, f"HTTP {response.status}: {truncate(text)}")
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(what, response.status, f"not JSON: {truncate(text)}") from None


def import_client() -> tuple[Any, Any]:
    """The client's modules; run in a thread, so that the imports do not hold up the loop."""
    return (
        importlib.import_module("kubernetes_asyncio.client"),
        importlib.import_module("kubernetes_asyncio.config"),
    )
