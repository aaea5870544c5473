"""Orchestration: the coordinator and one module per phase (asyncio, no third-party I/O)."""
