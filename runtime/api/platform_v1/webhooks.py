"""`/api/v1/webhooks`: inbound webhooks that start workflow executions (seed 001).

`setup` (editor) answers the receiving URL and the signing secret, once. The receiver takes no key: the Standard
Webhooks signature over the raw body is its authorization (runtime/workflows/triggers.py); any refusal is a 401 in
the platform envelope and starts nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from runtime.api.deps import Svc, requires
from runtime.auth.access import WRITE, ProjectContext

router = APIRouter()


@router.post("/webhooks/setup/{workflow_id}", status_code=201)
async def setup_webhook(workflow_id: str, request: Request, svc: Svc,
                        ctx: Annotated[ProjectContext, requires(WRITE, "workflow.webhook.setup")]) -> dict[str, Any]:
    made = await svc.triggers.setup(ctx, workflow_id)
    return {"workflow_id": made.workflow_id, "url": str(request.url_for("receive_webhook", workflow_id=workflow_id)),
            "secret": made.secret, "created_at": made.created_at}


# The handler reads the raw body (the signature covers its exact bytes), so FastAPI cannot infer these.
_SIGNED_DELIVERY: dict[str, Any] = {
    "parameters": [{"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
                   for name, text in (("webhook-id", "the message id; a second delivery of it is refused"),
                                      ("webhook-timestamp", "Unix seconds; refused when more than 5 minutes off"),
                                      ("webhook-signature", "space-separated `v1,<base64 HMAC-SHA256>` signatures"))],
    "requestBody": {"required": False, "description": "JSON, the execution's input (empty: null)",
                    "content": {"application/json": {"schema": {}}}},
}


@router.post("/webhooks/{workflow_id}", status_code=202, name="receive_webhook", openapi_extra=_SIGNED_DELIVERY)
async def receive_webhook(workflow_id: str, request: Request, svc: Svc) -> dict[str, Any]:
    execution_id = await svc.triggers.receive(workflow_id, await request.body(), request.headers)
    return {"execution_id": execution_id, "status": "pending"}
