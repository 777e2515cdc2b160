"""`/api/version` (release truth), `/api/keys` (TARX key lifecycle, seed 000) and account entitlements."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from runtime.api.deps import principal, services
from runtime.auth.access import PermissionDenied
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest
from runtime.release import version_info
from runtime.store import identity

router = APIRouter(prefix="/api", tags=["tarx"])
Caller = Annotated[Principal, Depends(principal)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateKey(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)] = "TARX key"
    scope: Literal["developer_runtime", "supercomputer"] = "developer_runtime"
    expires_at: StrictStr | None = None


class RevokeKey(_Body):
    id: StrictStr


class HostedUpstream(_Body):
    url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)]
    key: StrictStr | None = None


class Entitlement(_Body):
    entitlement: Literal["supercomputer"]
    email: StrictStr | None = None


@router.get("/version")
async def version(request: Request) -> JSONResponse:
    body = version_info(services(request).started_at)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/keys", status_code=201)
async def create_key(body: CreateKey, request: Request, caller: Caller) -> dict[str, Any]:
    minted = await services(request).accounts.create_key(caller, KeyKind.tarx, body.name, scope=body.scope,
                                                         expires_at=body.expires_at)
    return minted.public()


@router.get("/keys")
async def list_keys(request: Request, caller: Caller) -> dict[str, Any]:
    keys = await services(request).accounts.list_keys(caller, (KeyKind.tarx,))
    return {"object": "list", "data": [k.public() for k in keys]}


@router.delete("/keys")
async def revoke_key(request: Request, caller: Caller, id: str | None = Query(None)) -> dict[str, Any]:
    key_id = id
    if key_id is None and await request.body():
        key_id = RevokeKey.model_validate_json(await request.body()).id
    if not key_id:
        raise InvalidRequest("Name the key to revoke: ?id=key_… or a JSON body {\"id\": \"key_…\"}.")
    key = await services(request).accounts.revoke_key(caller, key_id, (KeyKind.tarx,))
    return {"id": key.id, "revoked": True, "revoked_at": key.revoked_at}


@router.get("/account")
async def account(request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    return {**caller.user.public(), "entitlements": await identity.entitlements(svc.db, caller.user.id)}


@router.post("/account/entitlements")
async def grant_entitlement(body: Entitlement, request: Request, caller: Caller) -> dict[str, Any]:
    names = await services(request).accounts.set_entitlement(caller, body.entitlement, True, body.email)
    return {"entitlements": names}


@router.delete("/account/entitlements")
async def revoke_entitlement(body: Entitlement, request: Request, caller: Caller) -> dict[str, Any]:
    names = await services(request).accounts.set_entitlement(caller, body.entitlement, False, body.email)
    return {"entitlements": names}


@router.put("/planes/supercomputer")
async def set_hosted_upstream(body: HostedUpstream, request: Request, caller: Caller) -> dict[str, Any]:
    """The owner points the supercomputer plane at a hosted upstream (its key is stored encrypted)."""
    if not caller.user.is_owner:
        raise PermissionDenied("Only the runtime's owner can configure execution planes.")
    await services(request).router.set_hosted(body.url, body.key)
    return {"plane": "supercomputer", "url": body.url.rstrip("/"), "key_set": body.key is not None}
