"""Registry back ends: each implements sidecar.shutdown.registries.Registry with its own client."""
