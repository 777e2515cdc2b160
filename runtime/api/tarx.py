"""`/api/version` (release truth) and, with the identity issue, `/api/keys`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runtime.api.deps import services
from runtime.release import version_info

router = APIRouter(prefix="/api", tags=["tarx"])


@router.get("/version")
async def version(request: Request) -> JSONResponse:
    body = version_info(services(request).started_at)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
