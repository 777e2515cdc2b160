"""The compute plane: jobs, leases, nodes, logs, artifacts, usage and limits, outbound webhooks."""
