"""Real servers (etcd, ...) started on loopback for the adapters' tests, and stopped after."""
