"""The worker agent behind `tarx node` (also run in-process by the runtime as its local node)."""
