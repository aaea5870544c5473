"""shutdown-coordinator: a Kubernetes sidecar that makes pod shutdown lossless."""

__version__ = "0.1.0"
