"""Project context (seed 001's resolution order) and role checks (seed 001's RBAC table)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest, NotFound, TarxError
from runtime.store import Database, audit, identity
from runtime.store.identity import ROLES, Project

# Seed 001: read = any member; create/update/delete = editor or admin; members and credentials = admin.
READ, WRITE, ADMIN, OWNER = "member", "editor", "admin", "owner"


class PermissionDenied(TarxError):
    status, type, code = 403, "permission_error", "permission_denied"

    def __init__(self, message: str) -> None:
        super().__init__(message, extra={"error_code": "PERMISSION_DENIED"})


def rank(role: str) -> int:
    return ROLES.index(role)


def allows(role: str | None, needed: str) -> bool:
    return role is not None and rank(role) >= rank(needed)


def require_owner(principal: Principal, message: str) -> Principal:
    """The runtime's owner (the account bootstrap made), else 403: runtime-wide settings are the owner's alone."""
    if not principal.user.is_owner:
        raise PermissionDenied(message)
    return principal


@dataclass
class ProjectContext:
    principal: Principal
    project: Project

    @property
    def role(self) -> str:
        assert self.project.role is not None
        return self.project.role


async def resolve_project(db: Database, principal: Principal, project_id: str | None,
                          slug: str | None) -> ProjectContext:
    user_id = principal.user.id
    bound = principal.key.project_id if principal.key else None
    if bound is not None:  # a workspace-bound key (compute, node) always acts in its workspace
        if (project_id and project_id != bound) or slug:
            found = await identity.project_for(db, user_id, bound)
            if found is None or (project_id and project_id != bound) or (slug and slug != found.slug):
                raise NotFound("This key is bound to another workspace.", extra={"error_code": "NOT_FOUND"})
        project_id = bound
    if project_id:
        project = await identity.project_for(db, user_id, project_id)
        if project is None:
            raise NotFound(f"Project '{project_id}' was not found.", extra={"error_code": "NOT_FOUND"})
        return ProjectContext(principal, project)
    if slug:
        found_by_slug = await identity.projects_by_slug(db, user_id, slug)
        if not found_by_slug:
            raise NotFound(f"No project with slug '{slug}' was found.", extra={"error_code": "NOT_FOUND"})
        return ProjectContext(principal, found_by_slug[0])
    projects = await identity.projects_for(db, user_id)
    if len(projects) == 1:
        return ProjectContext(principal, projects[0])
    if not projects:
        raise NotFound("You are not a member of any project.", extra={"error_code": "NOT_FOUND"})
    raise InvalidRequest(
        f"You have {len(projects)} projects; specify one with the X-Project-Slug or X-Project-ID header.",
        code="project_required", extra={"error_code": "PROJECT_REQUIRED"})


async def require(db: Database, ctx: ProjectContext, needed: str, action: str) -> None:
    """Raise 403 unless the caller's role in the project reaches `needed`; a refusal is audited."""
    if allows(ctx.project.role, needed):
        return
    async with db.transaction() as tx:
        await audit.write(tx, ctx.principal.actor, action, target=ctx.project.id, project_id=ctx.project.id,
                          outcome="denied", detail={"role": ctx.project.role, "needed": needed})
    raise PermissionDenied(f"This needs the {needed} role or higher in project '{ctx.project.slug}'; "
                           f"you are {ctx.project.role}.")
