"""Fakes of remote servers that only tests use, served over real HTTP to the real client code.

One home per kind of fake: here, remote servers no drill needs (Istio pilot-agent; later
Consul, Nacos, Eureka), each following the behaviour docs it cites. The stand-ins the drill
runs (API server, kubelet, data plane) live in `sidecar/drill/`; in-process doubles of the
shutdown phases' Protocols in `tests/shutdown/doubles.py`.
"""
