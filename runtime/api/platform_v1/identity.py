"""`/api/v1/auth/me` and `/api/v1/users/me`: who is calling."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.api.deps import Caller, Svc

router = APIRouter()


@router.get("/auth/me")
async def auth_me(svc: Svc, caller: Caller) -> dict[str, Any]:
    projects = await svc.accounts.projects(caller)
    return {**caller.user.public(), "auth": {"via": caller.via, "key_id": caller.key_id},
            "projects": [{"id": p.id, "slug": p.slug, "role": p.role} for p in projects]}


@router.get("/users/me")
async def users_me(svc: Svc, caller: Caller) -> dict[str, Any]:
    return {**caller.user.public(), "entitlements": await svc.accounts.entitlements(caller)}
