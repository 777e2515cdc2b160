"""Agents: the agent record's rules (service.py), the tool loop (loop.py) and the built-in tools (tools.py)."""
