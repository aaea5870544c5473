"""The agent: the sidecar in every pod that answers preStop hooks in order."""
