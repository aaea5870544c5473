"""The only door to the Kubernetes API (kubernetes-asyncio), for the agent and the injector.

The agent reads its pod, watches its EndpointSlices and posts Events; the injector reads (or
makes) each namespace's hook-token Secret and lists its Services.

Nothing here connects, or even imports the client, before the first call: in steady state a
pod costs the API server nothing (docs/kubernetes.md, "When it connects").
"""

from sidecar.adapters.kube.agent import KubeApi
from sidecar.adapters.kube.injector import SECRET_LABELS, InjectorApi, new_token

__all__ = ["SECRET_LABELS", "InjectorApi", "KubeApi", "new_token"]
