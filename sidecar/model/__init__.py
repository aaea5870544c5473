"""Pure decisions over snapshots: no asyncio, no I/O."""
