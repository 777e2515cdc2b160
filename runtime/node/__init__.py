"""The worker node behind `tarx node` (runner.py), also run in-process by the runtime as its local node."""
