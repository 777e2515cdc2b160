"""`/api/compute/*` (seed 003, POST-style) and `/api/auth/*` sessions. Answers: {"status", "message", "payload"}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from runtime.api.deps import client_address, principal, services
from runtime.auth.access import WRITE, require, resolve_project
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal

router = APIRouter(tags=["compute"])
Caller = Annotated[Principal, Depends(principal)]


def ok(payload: Any, message: str = "OK") -> dict[str, Any]:
    return {"status": "SUCCESS", "message": message, "payload": payload}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateComputeKey(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")
    max_jobs_per_hour: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="maxJobsPerHour")
    max_concurrent_jobs: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="maxConcurrentJobs")
    allowed_job_types: list[StrictStr] | None = Field(None, alias="allowedJobTypes")
    expires_at: StrictStr | None = Field(None, alias="expiresAt")


class KeyRef(_Body):
    id: StrictStr


class RequestCode(_Body):
    email: Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


class VerifyCode(RequestCode):
    code: Annotated[StrictStr, Field(pattern=r"^\d{6}$")]


def compute_key_view(key: Any) -> dict[str, Any]:
    q = key.quotas or {}
    return {"id": key.id, "name": key.name, "prefix": key.display_prefix, "workspaceId": key.project_id,
            "maxJobsPerHour": q.get("maxJobsPerHour"), "maxConcurrentJobs": q.get("maxConcurrentJobs"),
            "allowedJobTypes": q.get("allowedJobTypes"), "createdAt": key.created_at, "lastUsedAt": key.last_used_at,
            "expiresAt": key.expires_at, "revokedAt": key.revoked_at}


@router.post("/api/compute/api-keys/list")
async def list_compute_keys(request: Request, caller: Caller) -> dict[str, Any]:
    keys = await services(request).accounts.list_keys(caller, (KeyKind.compute,))
    return ok([compute_key_view(k) for k in keys])


@router.post("/api/compute/api-keys/create")
async def create_compute_key(body: CreateComputeKey, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await resolve_project(svc.db, caller, body.workspace_id, request.headers.get("x-project-slug"))
    await require(svc.db, ctx, WRITE, "key.create")
    quotas = {"maxJobsPerHour": body.max_jobs_per_hour, "maxConcurrentJobs": body.max_concurrent_jobs,
              "allowedJobTypes": body.allowed_job_types}
    minted = await svc.accounts.create_key(caller, KeyKind.compute, body.name, project_id=ctx.project.id,
                                           quotas={k: v for k, v in quotas.items() if v is not None},
                                           expires_at=body.expires_at)
    return ok({**compute_key_view(minted.key), "key": minted.plaintext},
              "Key created; this is the only time it is shown.")


@router.post("/api/compute/api-keys/revoke")
async def revoke_compute_key(body: KeyRef, request: Request, caller: Caller) -> dict[str, Any]:
    key = await services(request).accounts.revoke_key(caller, body.id, (KeyKind.compute,))
    return ok(compute_key_view(key), "Key revoked.")


@router.post("/api/auth/request-otp")
async def request_code(body: RequestCode, request: Request) -> dict[str, Any]:
    await services(request).accounts.request_code(body.email, client_address(request))
    # Same answer whether or not the account exists: no account enumeration.
    return ok(None, "If the account exists, a one-time code was issued; it appears in the runtime's log.")


@router.post("/api/auth/verify-otp")
async def verify_code(body: VerifyCode, request: Request) -> dict[str, Any]:
    token, expires, user = await services(request).accounts.verify_code(body.email, body.code,
                                                                        client_address(request))
    return ok({"token": token, "tokenType": "Bearer",
               "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"), "user": user.public()})
