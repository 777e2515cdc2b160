"""`/api/v1/platform-keys`: the caller's personal platform keys (`sk-tarx-…`), shown once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Caller, Svc
from runtime.api.platform_v1.shapes import Name, Page, PerPage, page
from runtime.auth.keys import KeyKind

router = APIRouter()


class CreatePlatformKey(Body):
    name: Name
    expires_at: StrictStr | None = None


@router.get("/platform-keys")
async def list_platform_keys(svc: Svc, caller: Caller, page_no: Page = 1, per_page: PerPage = 20) -> dict[str, Any]:
    keys = await svc.accounts.list_keys(caller, (KeyKind.platform,))
    return page([k.public() for k in keys], page_no, per_page)


@router.post("/platform-keys", status_code=201)
async def create_platform_key(body: CreatePlatformKey, svc: Svc, caller: Caller) -> dict[str, Any]:
    minted = await svc.accounts.create_key(caller, KeyKind.platform, body.name, expires_at=body.expires_at)
    return minted.public()


@router.delete("/platform-keys/{key_id}", status_code=204)
async def delete_platform_key(key_id: str, svc: Svc, caller: Caller) -> Response:
    await svc.accounts.revoke_key(caller, key_id, (KeyKind.platform,))
    return Response(status_code=204)
