"""The console's views, the names `:` knows them by, and their aliases (k9s style)."""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen

from tarx_console.screens.agents import AgentsScreen
from tarx_console.screens.dashboard import DashboardScreen
from tarx_console.screens.executions import ExecutionsScreen
from tarx_console.screens.jobs import JobsScreen
from tarx_console.screens.keys import KeysScreen
from tarx_console.screens.mcp import McpScreen
from tarx_console.screens.nodes import NodesScreen
from tarx_console.screens.projects import ProjectsScreen
from tarx_console.screens.rag import RagScreen
from tarx_console.screens.workflows import WorkflowsScreen

VIEWS: dict[str, Callable[[], Screen]] = {
    "dashboard": DashboardScreen,
    "jobs": JobsScreen,
    "keys": KeysScreen,
    "projects": ProjectsScreen,
    "nodes": NodesScreen,
    "agents": AgentsScreen,
    "rags": RagScreen,
    "mcp": McpScreen,
    "workflows": WorkflowsScreen,
    "executions": ExecutionsScreen,
}

ALIASES = {
    "dash": "dashboard", "home": "dashboard", "health": "dashboard",
    "job": "jobs", "j": "jobs",
    "key": "keys", "k": "keys", "apikeys": "keys",
    "project": "projects", "proj": "projects", "p": "projects", "workspaces": "projects",
    "node": "nodes", "no": "nodes", "workers": "nodes",
    "agent": "agents", "a": "agents", "rag": "rags", "sources": "rags", "knowledge": "rags",
    "mcps": "mcp", "servers": "mcp",
    "workflow": "workflows", "wf": "workflows", "execution": "executions", "ex": "executions",
}


def resolve_view(name: str) -> str | None:
    name = name.strip().lstrip(":").lower()
    return name if name in VIEWS else ALIASES.get(name)
