"""`/api/v1/mcp`: a project's MCP servers (seed 001): list, connect, details with tools, disconnect, discover."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field, StrictStr, model_validator

from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc
from runtime.api.platform_v1.shapes import Name, page
from runtime.mcp import Transport

router = APIRouter()

EnvName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]
HeaderName = Annotated[StrictStr, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=200)]
Value = Annotated[StrictStr, Field(max_length=16384)]


class TransportBody(Body):
    """stdio (`command`, `args`, `env`) or streamable HTTP (`url`, `headers`)."""

    transport: Literal["stdio", "streamable_http"] = "stdio"
    command: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = None
    args: Annotated[list[Annotated[StrictStr, Field(max_length=4096)]], Field(max_length=100)] = []
    env: Annotated[dict[EnvName, Value], Field(max_length=100)] = {}
    url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)] | None = None
    headers: Annotated[dict[HeaderName, Value], Field(max_length=100)] = {}

    @model_validator(mode="after")
    def _one_transport(self) -> TransportBody:
        if self.transport == "stdio":
            if self.command is None or self.url is not None or self.headers:
                raise ValueError("a stdio server takes command (args, env), not url or headers")
        elif self.url is None or self.command is not None or self.args or self.env:
            raise ValueError("a streamable_http server takes url (headers), not command, args or env")
        return self

    def to_transport(self) -> Transport:
        return Transport(kind=self.transport, command=self.command, args=tuple(self.args), env=self.env,
                         url=self.url, headers=self.headers)


class ConnectServer(TransportBody):
    name: Name
    description: Annotated[StrictStr, Field(max_length=2000)] = ""


@router.get("/mcp")
async def list_servers(svc: Svc, ctx: Project) -> dict[str, Any]:
    servers = [s.model_dump() for s in await svc.mcp.list(ctx)]
    return page(servers, 1, max(len(servers), 1))


@router.post("/mcp", status_code=201)
async def connect_server(body: ConnectServer, svc: Svc, ctx: Project) -> dict[str, Any]:
    server = await svc.mcp.create(ctx, body.name, body.to_transport(), body.description)
    return server.model_dump()


@router.post("/mcp/discover")
async def discover(body: TransportBody, svc: Svc, ctx: Project) -> dict[str, Any]:
    tools = [t.model_dump() for t in await svc.mcp.discover(ctx, body.to_transport())]
    return {"tools": tools, "total": len(tools)}


@router.get("/mcp/{mcp_id}")
async def get_server(mcp_id: str, svc: Svc, ctx: Project,
                     refresh: Annotated[bool, Query(description="discover the tools now (else: cached)")] = True,
                     ) -> dict[str, Any]:
    return (await svc.mcp.get(ctx, mcp_id, live=refresh)).model_dump()


@router.delete("/mcp/{mcp_id}", status_code=204)
async def disconnect_server(mcp_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.mcp.delete(ctx, mcp_id)
    return Response(status_code=204)
