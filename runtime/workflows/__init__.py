"""Workflows (issue 14): the graph and its validation (graph.py), sandboxed templates (templates.py), running one
execution (executor.py), the service behind the API (service.py), schedules (scheduler.py) and inbound webhooks
(triggers.py)."""
