"""What routers reach: the services the lifespan started, the caller, and the caller's project."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Depends, Request

from runtime.auth import keys
from runtime.auth.access import ProjectContext, resolve_project
from runtime.auth.accounts import Accounts
from runtime.auth.principal import Authenticator, AuthError, Principal, required
from runtime.compute.artifacts import ArtifactStore
from runtime.compute.jobs import JobService
from runtime.compute.nodes import NodeService
from runtime.compute.webhooks import WebhookService
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
from runtime.inference.routing import Router
from runtime.store import Database

SSE_SUFFIXES = ("/stream", "/logs", "/events")


@dataclass
class Services:
    """The running runtime's parts."""

    settings: Settings
    db: Database
    engine: InferenceEngine
    chat: ChatService
    router: Router
    auth: Authenticator
    accounts: Accounts
    jobs: JobService
    nodes: NodeService
    artifacts: ArtifactStore
    webhooks: WebhookService
    instance_id: str
    version: str
    started_at_epoch: int
    started_at: str
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def begin_shutdown(self) -> None:
        """End what streams: generations are cut (their streams close with an error event) and log followers
        close with an end event, so no client is left with a half-sent response."""
        self.stopping.set()
        self.engine.begin_shutdown()


def services(request: Request) -> Services:
    return request.app.state.services


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def optional_principal(request: Request) -> Principal | None:
    # `?token=` only where seed 001 allows it: SSE GETs, since EventSource cannot send headers.
    token = None
    if request.method == "GET" and request.url.path.endswith(SSE_SUFFIXES):
        token = request.query_params.get("token")
    return await services(request).auth.resolve(
        request.headers.get("authorization"), request.headers.get("x-api-key"), token, client_address(request))


async def principal(request: Request) -> Principal:
    found = await optional_principal(request)
    if found is None:
        raise required()
    return found


async def inference_principal(request: Request) -> Principal | None:
    """/v1 inference: anonymous allowed on a loopback bind unless settings say otherwise.

    When anonymous calls are allowed, a placeholder key (SDKs insist on sending one) that is not in any TARX key
    format is ignored, as Ollama does; anything that looks like a TARX key is still checked (revoked -> 401).
    """
    needs_key = services(request).settings.inference_needs_key
    try:
        found = await optional_principal(request)
    except AuthError:
        bearer = request.headers.get("authorization", "").partition(" ")[2].strip()
        if needs_key or request.headers.get("x-api-key") or keys.looks_like_key(bearer):
            raise
        found = None
    if found is None and needs_key:
        raise required()
    return found


async def context_for(request: Request, caller: Principal, project_id: str | None = None) -> ProjectContext:
    """The caller's project: `project_id` (a body's workspaceId) or X-Project-ID, else X-Project-Slug, else
    their only one (seed 001's order)."""
    return await resolve_project(services(request).db, caller, project_id or request.headers.get("x-project-id"),
                                 request.headers.get("x-project-slug"))


async def project_context(request: Request, caller: Principal = Depends(principal)) -> ProjectContext:
    return await context_for(request, caller)


async def project_by_path(request: Request, project_id: str, caller: Principal = Depends(principal)
                          ) -> ProjectContext:
    """A project named in the path: 404 unless the caller is a member (never leaked)."""
    return await resolve_project(services(request).db, caller, project_id, None)
