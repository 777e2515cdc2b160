"""`/api/version` (release truth), `/api/keys` (TARX key lifecycle, seed 000), the account's entitlements and the
hosted plane's upstream."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Caller, Svc
from runtime.auth.access import require_owner
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest
from runtime.release import version_info

router = APIRouter(prefix="/api", tags=["tarx"])


class CreateKey(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)] = "TARX key"
    scope: Literal["developer_runtime", "supercomputer"] = "developer_runtime"
    expires_at: StrictStr | None = None


class RevokeKey(Body):
    id: StrictStr


class HostedUpstream(Body):
    url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)]
    key: StrictStr | None = None


class Entitlement(Body):
    entitlement: Literal["supercomputer"]
    email: StrictStr | None = None


async def plane_owner(caller: Caller) -> Principal:
    return require_owner(caller, "Only the runtime's owner can configure execution planes.")


PlaneOwner = Annotated[Principal, Depends(plane_owner)]


async def key_to_revoke(request: Request, id: str | None = Query(None)) -> str:
    """`?id=key_…`, or a JSON body `{"id": "key_…"}` (seed 000 names neither; clients send both)."""
    if id is None and (raw := await request.body()):
        id = RevokeKey.model_validate_json(raw).id
    if not id:
        raise InvalidRequest("Name the key to revoke: ?id=key_… or a JSON body {\"id\": \"key_…\"}.")
    return id


@router.get("/version")
async def version(svc: Svc) -> JSONResponse:
    return JSONResponse(version_info(svc.started_at), headers={"Cache-Control": "no-store"})


@router.post("/keys", status_code=201)
async def create_key(body: CreateKey, svc: Svc, caller: Caller) -> dict[str, Any]:
    minted = await svc.accounts.create_key(caller, KeyKind.tarx, body.name, scope=body.scope,
                                           expires_at=body.expires_at)
    return minted.public()


@router.get("/keys")
async def list_keys(svc: Svc, caller: Caller) -> dict[str, Any]:
    keys = await svc.accounts.list_keys(caller, (KeyKind.tarx,))
    return {"object": "list", "data": [k.public() for k in keys]}


@router.delete("/keys")
async def revoke_key(svc: Svc, caller: Caller, key_id: Annotated[str, Depends(key_to_revoke)]) -> dict[str, Any]:
    key = await svc.accounts.revoke_key(caller, key_id, (KeyKind.tarx,))
    return {"id": key.id, "revoked": True, "revoked_at": key.revoked_at}


@router.get("/account")
async def account(svc: Svc, caller: Caller) -> dict[str, Any]:
    return {**caller.user.public(), "entitlements": await svc.accounts.entitlements(caller)}


@router.post("/account/entitlements")
async def grant_entitlement(body: Entitlement, svc: Svc, caller: Caller) -> dict[str, Any]:
    return {"entitlements": await svc.accounts.set_entitlement(caller, body.entitlement, True, body.email)}


@router.delete("/account/entitlements")
async def revoke_entitlement(body: Entitlement, svc: Svc, caller: Caller) -> dict[str, Any]:
    return {"entitlements": await svc.accounts.set_entitlement(caller, body.entitlement, False, body.email)}


@router.put("/planes/supercomputer")
async def set_hosted_upstream(body: HostedUpstream, svc: Svc, caller: PlaneOwner) -> dict[str, Any]:
    """The owner points the supercomputer plane at a hosted upstream (its key is stored encrypted)."""
    await svc.chat.set_hosted(body.url, body.key)
    return {"plane": "supercomputer", "url": body.url.rstrip("/"), "key_set": body.key is not None}
