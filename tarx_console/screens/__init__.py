"""The console's views, the names `:` knows them by, and their aliases (k9s style)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.screen import Screen

from tarx_console.screens.dashboard import DashboardScreen
from tarx_console.screens.jobs import JobsScreen
from tarx_console.screens.keys import KeysScreen
from tarx_console.screens.later import NotYetScreen
from tarx_console.screens.nodes import NodesScreen
from tarx_console.screens.projects import ProjectsScreen

VIEWS: dict[str, Callable[[], Screen]] = {
    "dashboard": DashboardScreen,
    "jobs": JobsScreen,
    "keys": KeysScreen,
    "projects": ProjectsScreen,
    "nodes": NodesScreen,
    "agents": partial(NotYetScreen, "Agents"),
    "workflows": partial(NotYetScreen, "Workflows"),
    "executions": partial(NotYetScreen, "Executions"),
}

ALIASES = {
    "dash": "dashboard", "home": "dashboard", "health": "dashboard",
    "job": "jobs", "j": "jobs",
    "key": "keys", "k": "keys", "apikeys": "keys",
    "project": "projects", "proj": "projects", "p": "projects", "workspaces": "projects",
    "node": "nodes", "no": "nodes", "workers": "nodes",
    "agent": "agents", "workflow": "workflows", "wf": "workflows", "execution": "executions", "ex": "executions",
}


def resolve_view(name: str) -> str | None:
    name = name.strip().lstrip(":").lower()
    return name if name in VIEWS else ALIASES.get(name)
