"""Inbound webhooks: a signed POST starts a workflow execution with the JSON body as its input.

Verification is the Standard Webhooks scheme, by the `standardwebhooks` library: HMAC-SHA256 with the workflow's
secret over `{webhook-id}.{webhook-timestamp}.{raw body}`, compared in constant time against the `v1,` signatures
in `webhook-signature`; a `webhook-timestamp` more than 5 minutes from now (either way) is refused. An accepted
`webhook-id` is remembered in the database until its timestamp could no longer pass that check, and a second
delivery of it is refused as a replay. Every refusal is a 401 and starts nothing. When the execution cannot start
(e.g. the project's executions-per-hour limit), the id is forgotten again: Standard Webhooks senders retry with
the same id, and that retry must not be taken for a replay.

The secret (`whsec_` + 32 random bytes, base64) is in the setup answer only; the database holds it sealed with the
runtime's SecretBox. Setting up again replaces it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from runtime.auth.access import WRITE, ProjectContext, require
from runtime.auth.secretbox import SecretBox
from runtime.errors import NotFound, TarxError
from runtime.store import Database, audit
from runtime.store import workflow_triggers as store
from runtime.store.db import iso_in
from runtime.workflows.scheduler import StartsExecutions, workflow_in

# The library's fixed timestamp tolerance; an id is kept until a message with it could no longer pass (its
# timestamp may be up to the tolerance in the future, then valid for the tolerance again).
TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 256


class WebhookRefused(TarxError):
    """The delivery failed verification: 401 in the family's envelope, and nothing runs."""

    status, type, code = 401, "authentication_error", "webhook_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Webhook refused: {reason}", extra={"error_code": "AUTH_REQUIRED"})


@dataclass(frozen=True)
class WebhookSecret:
    workflow_id: str
    secret: str  # plaintext: shown once
    created_at: str


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class TriggerService:
    def __init__(self, db: Database, box: SecretBox, workflows: StartsExecutions) -> None:
        self.db = db
        self.box = box
        self.workflows = workflows

    async def setup(self, ctx: ProjectContext, workflow_id: str) -> WebhookSecret:
        """A new signing secret for the workflow's inbound webhook (replacing any earlier one)."""
        await require(self.db, ctx, WRITE, "workflow.webhook.setup")
        await workflow_in(self.workflows, ctx.project.id, workflow_id)
        secret = new_secret()
        async with self.db.transaction() as tx:
            hook = await store.put_hook(tx, workflow_id, ctx.project.id, self.box.seal(secret),
                                        ctx.principal.user.id)
            await audit.write(tx, ctx.principal.actor, "workflow.webhook.setup", target=workflow_id,
                              project_id=ctx.project.id)
        return WebhookSecret(workflow_id, secret, hook.created_at)

    async def receive(self, workflow_id: str, body: bytes, headers: Mapping[str, str]) -> str:
        """Verify a delivery and start its execution; the execution's id."""
        hook = await store.get_hook(self.db, workflow_id)
        if hook is None:
            raise NotFound(f"No webhook is set up for workflow '{workflow_id}'.", extra={"error_code": "NOT_FOUND"})
        wanted = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        message_id = wanted["webhook-id"]
        if len(message_id) > MAX_ID_LENGTH:
            raise WebhookRefused(f"webhook-id is longer than {MAX_ID_LENGTH} characters")
        if wanted["webhook-signature"] and not _well_formed(wanted["webhook-signature"]):
            raise WebhookRefused("malformed webhook-signature header (want 'v1,<base64>' entries)")
        try:
            Webhook(self.box.open(hook.secret)).verify(body, wanted, json_parse=False)
        except WebhookVerificationError as exc:
            raise WebhookRefused(str(exc)) from None
        payload = _input(body)
        async with self.db.transaction() as tx:
            fresh = await store.remember_message(tx, workflow_id, message_id, iso_in(2 * TOLERANCE.total_seconds()))
        if not fresh:
            raise WebhookRefused(f"message '{message_id}' was already received (replay)")
        try:
            return await self.workflows.start_execution(hook.project_id, workflow_id, payload, trigger="webhook",
                                                        actor_user_id=hook.actor_user_id)
        except Exception:
            async with self.db.transaction() as tx:
                await store.forget_message(tx, workflow_id, message_id)
            raise


def _well_formed(header: str) -> bool:
    """Every space-separated entry is `<version>,<signature>`: checked here, not left to the library, whose
    releases differ (1.1 raised ValueError on such a header, 1.3 reports it as an unmatched signature)."""
    return all(version and signature for version, _, signature in (e.partition(",") for e in header.split(" ")))


def _input(body: bytes) -> Any:
    """The execution's input: the JSON body (an empty body is null)."""
    if not body.strip():
        return None
    try:
        return json.loads(body, parse_constant=_no_constant)
    except ValueError:
        raise TarxError("The webhook body is not valid JSON.", status=422,
                        extra={"error_code": "VALIDATION_ERROR"}) from None


def _no_constant(name: str) -> Any:
    """Python's parser takes NaN and Infinity, which are not JSON: refused, like every body of this family."""
    raise ValueError(f"{name} is not JSON")
