"""What routers reach, as `Annotated` dependencies: `Svc` (the running services), `Caller` (who is calling),
`Project` (the caller's project, seed 001's resolution order), `PathProject` (a project named in the path) and
`requires(role, action)` (a project context the caller holds at least `role` in; a refusal is audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from runtime.api import reach
from runtime.api.families import accepts_query_token
from runtime.auth import keys
from runtime.auth.access import ProjectContext, require, resolve_project
from runtime.auth.principal import AuthError, Principal, required
from runtime.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(client_address)]


async def optional_principal(request: Request, svc: Svc) -> Principal | None:
    """The caller, or None when no credential was sent; a caller outside the route's declared reach (its kind of
    credential, runtime/api/reach.py) is refused here, before any handler runs."""
    token = request.query_params.get("token") if accepts_query_token(request.method, request.url.path) else None
    found = await svc.auth.resolve(
        request.headers.get("authorization"), request.headers.get("x-api-key"), token, client_address(request))
    if found is not None:
        await reach.check(svc, request, found)
    return found


async def principal(caller: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if caller is None:
        raise required()
    return caller


Caller = Annotated[Principal, Depends(principal)]


async def inference_principal(request: Request, svc: Svc) -> Principal | None:
    """/v1 inference: anonymous allowed on a loopback bind unless settings say otherwise.

    When anonymous calls are allowed, a placeholder key (SDKs insist on sending one) that is not in any TARX key
    format is ignored, as Ollama does; anything that looks like a TARX key is still checked (revoked -> 401).
    """
    needs_key = svc.settings.inference_needs_key
    try:
        found = await optional_principal(request, svc)
    except AuthError:
        bearer = request.headers.get("authorization", "").partition(" ")[2].strip()
        if needs_key or request.headers.get("x-api-key") or keys.looks_like_key(bearer):
            raise
        found = None
    if found is None and needs_key:
        raise required()
    return found


InferenceCaller = Annotated[Principal | None, Depends(inference_principal)]


async def context_for(request: Request, caller: Principal, project_id: str | None = None) -> ProjectContext:
    """The caller's project: `project_id` (a body's workspaceId) or X-Project-ID, else X-Project-Slug, else
    their only one (seed 001's order)."""
    return await resolve_project(services(request).db, caller, project_id or request.headers.get("x-project-id"),
                                 request.headers.get("x-project-slug"))


async def project_context(request: Request, caller: Caller) -> ProjectContext:
    return await context_for(request, caller)


async def project_by_path(svc: Svc, project_id: str, caller: Caller) -> ProjectContext:
    """A project named in the path: 404 unless the caller is a member (never leaked)."""
    return await resolve_project(svc.db, caller, project_id, None)


Project = Annotated[ProjectContext, Depends(project_context)]
PathProject = Annotated[ProjectContext, Depends(project_by_path)]


def requires(role: str, action: str, *, by_path: bool = False) -> Any:
    """`Depends` for a project context in which the caller holds at least `role`; 403 (audited as `action`)
    otherwise. Use as `ctx: Annotated[ProjectContext, requires(ADMIN, "audit.read")]`."""
    source = project_by_path if by_path else project_context

    # A default, not Annotated: `source` is a local name, which a string annotation cannot resolve.
    async def check(svc: Svc, ctx: ProjectContext = Depends(source)) -> ProjectContext:
        await require(svc.db, ctx, role, action)
        return ctx

    return Depends(check)
