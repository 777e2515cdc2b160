"""`/api/v1/llm-keys` (BYOK) and `/api/v1/credentials`: project secrets, encrypted at rest, listed masked."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc
from runtime.api.platform_v1.shapes import Name, page

router = APIRouter()


class AddLlmKey(Body):
    provider: Annotated[StrictStr, Field(min_length=1, max_length=50)]
    name: Name | None = None
    key: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    # An OpenAI-compatible endpoint: makes this key the project's enterprise upstream.
    base_url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)] | None = None


class AddCredential(Body):
    name: Name
    value: Annotated[StrictStr, Field(min_length=1, max_length=16384)]
    type: Annotated[StrictStr, Field(max_length=50)] | None = None


def credential_view(row: dict[str, Any]) -> dict[str, Any]:
    """Seed 001: credentials are listed by name only."""
    return {"id": row["id"], "name": row["name"], "type": row["provider"], "created_at": row["created_at"]}


@router.get("/llm-keys")
async def list_llm_keys(svc: Svc, ctx: Project) -> dict[str, Any]:
    rows = await svc.accounts.list_secrets(ctx, "llm_key")
    return page(rows, 1, max(len(rows), 1))


@router.post("/llm-keys", status_code=201)
async def add_llm_key(body: AddLlmKey, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.accounts.add_secret(ctx, "llm_key", body.name or body.provider, body.key, body.provider,
                                         body.base_url)


@router.delete("/llm-keys/{key_id}", status_code=204)
async def delete_llm_key(key_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.accounts.delete_secret(ctx, "llm_key", key_id)
    return Response(status_code=204)


@router.get("/credentials")
async def list_credentials(svc: Svc, ctx: Project) -> dict[str, Any]:
    names = [credential_view(r) for r in await svc.accounts.list_secrets(ctx, "credential")]
    return page(names, 1, max(len(names), 1))


@router.post("/credentials", status_code=201)
async def add_credential(body: AddCredential, svc: Svc, ctx: Project) -> dict[str, Any]:
    return credential_view(await svc.accounts.add_secret(ctx, "credential", body.name, body.value, body.type))


@router.delete("/credentials/{cred_id}", status_code=204)
async def delete_credential(cred_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.accounts.delete_secret(ctx, "credential", cred_id)
    return Response(status_code=204)
