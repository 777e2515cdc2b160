"""MCP: the client of a project's MCP servers (the official `mcp` SDK) and the service behind `/api/v1/mcp`.

Agents call `McpService.call_tool(ctx, server_id, name, args) -> ToolOutcome(success, result_text)`.
"""

from runtime.mcp.client import McpTool, ToolOutcome, Transport
from runtime.mcp.service import McpServer, McpService

__all__ = ["McpServer", "McpService", "McpTool", "ToolOutcome", "Transport"]
