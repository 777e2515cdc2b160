"""`GET /metrics`: the runtime's Prometheus metrics (runtime/metrics.py), for its owner, or for anyone when the
`metrics_public` setting opens it. Requests are counted by the access-log middleware (runtime/api/middleware.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from runtime.api.deps import Svc, optional_principal
from runtime.auth.access import require_owner
from runtime.auth.principal import required
from runtime.metrics import CONTENT_TYPE

router = APIRouter(tags=["tarx"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, svc: Svc) -> Response:
    if not svc.settings.metrics_public:  # the owner's session or platform key (reach: runtime/api/reach.py)
        caller = await optional_principal(request, svc)
        if caller is None:
            raise required()
        require_owner(caller, "Only the runtime's owner can read its metrics (or set metrics_public).")
    return Response(await svc.metrics.scrape(svc.db, svc.engine), media_type=CONTENT_TYPE)
