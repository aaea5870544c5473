"""The drill: a local simulation of a pod deletion under load, with real processes."""
