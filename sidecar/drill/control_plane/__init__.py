"""The Kubernetes API server stand-in: pods, Services, EndpointSlices and Events over real HTTP.

Dependencies point one way: `server` wires `crud`, `listwatch`, `controller` and `faults`
together; they read and write the `store`; `pod_deletion`, `endpointslices` and `selectors`
are pure decisions over `store.Object`.
"""

from sidecar.drill.control_plane.faults import Faults
from sidecar.drill.control_plane.server import ControlPlane

__all__ = ["ControlPlane", "Faults"]
