"""The injector's API calls: each namespace's hook-token Secret, its Services, pod Events."""

from __future__ import annotations

import base64
import os
import secrets
import time
from typing import Any

from sidecar.adapters.kube.connection import Connection
from sidecar.errors import ApiError, truncate


class InjectorApi(Connection):
    """The injector's calls: a namespace's hook-token Secret (read, or made) and its Services."""

    async def hook_token(self, namespace: str, name: str, key: str, *, create: bool) -> str:
        """The text under `key` of the Secret `name` in `namespace`.

        When the Secret is absent and `create` holds (never for a dry-run review), it is created
        with a random token. If someone else created it in between (409 AlreadyExists: another
        replica answering a review of the same namespace), theirs is read and returned. Any other
        failure is ApiError; `status` 404 means absent and not created.
        """
        path = f"/api/v1/namespaces/{namespace}/secrets"
        try:
            return _secret_value(await self._call("get secret", "GET", f"{path}/{name}"), key)
        except ApiError as e:
            if e.status != 404 or not create:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": SECRET_LABELS},
            "type": "Opaque",
            "data": {key: base64.b64encode(new_token().encode()).decode()},
        }
        try:
            made = await self._call("create secret", "POST", path, body=body)
        except ApiError as e:
            if e.status != 409:
                raise
            # Created since our read: the first writer's token is the namespace's token.
            made = await self._call("get secret", "GET", f"{path}/{name}")
        return _secret_value(made, key)

    async def service_selectors(self, namespace: str) -> dict[str, dict[str, str]]:
        """Each Service of the namespace by name, with its selector (empty when it has none)."""
        doc = await self._call("list services", "GET", f"/api/v1/namespaces/{namespace}/services")
        try:
            return {
                item["metadata"]["name"]: dict((item.get("spec") or {}).get("selector") or {})
                for item in doc.get("items") or []
            }
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ApiError("list services", 200, f"malformed list: {e!r}") from e

    async def post_pod_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        """A Warning Event on someone's pod (the deletion webhook's, at a pod's cap)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "shutdown-coordinator-injector"},
            "reportingComponent": "shutdown-coordinator-injector",
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call(
            "create event", "POST", f"/api/v1/namespaces/{namespace}/events", body=body
        )


#: The labels of a token Secret the injector creates.
SECRET_LABELS = {
    "app.kubernetes.io/managed-by": "shutdown-coordinator-injector",
    "app.kubernetes.io/part-of": "shutdown-coordinator",
}
#: Random bytes in a created token; URL-safe base64 makes 32 characters of a header value.
TOKEN_BYTES = 24


def new_token() -> str:
    """A fresh hook token: 24 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def _secret_value(doc: Any, key: str) -> str:
    """The text under `key` in a Secret object; ApiError when it is not there or not text."""
    data = doc.get("data") if isinstance(doc, dict) else None
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise ApiError("get secret", 200, f"the Secret has no key {truncate(repr(key), 80)}")
    try:
        return base64.b64decode(value, validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ApiError("get secret", 200, f"key {truncate(repr(key), 80)} is not text") from None
