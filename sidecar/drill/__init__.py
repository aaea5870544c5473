"""The drill: a local simulation of a pod deletion under load, with real processes.

Where fakes live, one home per kind:

- `sidecar/drill/`: the stand-ins the drill runs, which tests share: the Kubernetes API server
  (`control_plane`), the kubelet (`kubelet`), the data plane (`dataplane`, the ingress Envoy).
- `tests/fakes/`: fakes of remote servers that only tests use (Istio pilot-agent; later Consul,
  Nacos, Eureka), each driven over real HTTP by the real client code.
- `tests/shutdown/doubles.py`: in-process doubles of the shutdown phases' Protocols.
"""
