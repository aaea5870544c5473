"""The only code that touches the outside world: kernel, processes, Envoy, APIs, registries."""
