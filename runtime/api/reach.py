"""One declared reach per route: which kinds of credential may call it (the kinds: runtime/auth/reach.py).

The table is keyed by (method, path template) exactly as the app routes them, and is enforced in one place: the
caller's resolution (`deps.optional_principal`), before any handler runs. tests/test_key_kinds.py walks the app's
routes and fails for a route missing here, so a new route is declared where it is added. A route missing at run
time reaches the user's own credentials only (sessions and platform keys), never a narrower key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from starlette.routing import compile_path

try:  # FastAPI >= 0.160 keeps included routers nested; this walks them
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI copies routes into the app with their full paths
    iter_route_contexts = None  # type: ignore[assignment]

from runtime.auth.principal import Principal
from runtime.auth.reach import COMPUTE, NODE, PUBLIC, TARX, USER, WORKER, Reach, enforce
from runtime.services import Services

log = logging.getLogger("tarx.auth")

UNDECLARED = USER
# Inbound workflow webhooks take no credential: the Standard Webhooks signature over the body authorizes the call
# (runtime/workflows/triggers.py). Public, so any caller gets that far; its kinds stay the user's own, as for every
# other /api/v1 route, so no key kind gains anything here.
SIGNED = Reach("signed", USER.kinds, public=True)

ROUTES: dict[tuple[str, str], Reach] = {
    # ---- seed 000: OpenAI-compatible inference, TARX keys, release truth ---------------------------------------
    ("GET", "/health"): PUBLIC,
    ("GET", "/v1/health"): PUBLIC,
    ("POST", "/v1/chat/completions"): TARX,
    ("POST", "/v1/embeddings"): TARX,
    ("GET", "/v1/models"): TARX,
    ("GET", "/v1/models/{model_id}"): TARX,
    ("GET", "/v1/capacity"): TARX,
    ("GET", "/v1/routes"): TARX,
    ("GET", "/v1/evidence"): TARX,
    ("GET", "/v1/evidence/{evidence_id}"): TARX,
    ("GET", "/v1/usage"): TARX,
    ("GET", "/v1/rag/status"): TARX,
    ("GET", "/v1/rag/jobs"): TARX,
    ("POST", "/v1/rag/jobs"): TARX,
    ("POST", "/v1/completions"): TARX,  # issue 16: legacy completions and the Responses API
    ("POST", "/v1/responses"): TARX,
    ("GET", "/v1/responses/{response_id}"): TARX,
    ("DELETE", "/v1/responses/{response_id}"): TARX,
    ("GET", "/api/version"): PUBLIC,
    ("GET", "/openai-tools"): PUBLIC,  # the local tools in OpenAI function-calling format: static, no secrets
    ("POST", "/api/keys"): TARX,
    ("GET", "/api/keys"): TARX,
    ("DELETE", "/api/keys"): TARX,
    # the account and the runtime's planes: the user's own credentials (owner-only checks are the service's)
    ("GET", "/api/account"): USER,
    ("POST", "/api/account/entitlements"): USER,
    ("DELETE", "/api/account/entitlements"): USER,
    ("PUT", "/api/planes/supercomputer"): USER,
    # Prometheus metrics: the owner (checked in the handler), or anyone when the metrics_public setting opens it
    ("GET", "/metrics"): USER,
    # ---- seed 001: the platform API, by role ---------------------------------------------------------------------
    ("GET", "/api/v1/auth/me"): USER,
    ("GET", "/api/v1/users/me"): USER,
    ("GET", "/api/v1/platform-keys"): USER,
    ("POST", "/api/v1/platform-keys"): USER,
    ("DELETE", "/api/v1/platform-keys/{key_id}"): USER,
    ("GET", "/api/v1/projects"): USER,
    ("POST", "/api/v1/projects"): USER,
    ("GET", "/api/v1/projects/{project_id}"): USER,
    ("PATCH", "/api/v1/projects/{project_id}"): USER,
    ("GET", "/api/v1/projects/{project_id}/members"): USER,
    ("POST", "/api/v1/projects/{project_id}/members"): USER,
    ("DELETE", "/api/v1/projects/{project_id}/members"): USER,
    ("DELETE", "/api/v1/projects/{project_id}/members/{user_id}"): USER,
    ("GET", "/api/v1/llm-keys"): USER,
    ("POST", "/api/v1/llm-keys"): USER,
    ("DELETE", "/api/v1/llm-keys/{key_id}"): USER,
    ("GET", "/api/v1/credentials"): USER,
    ("POST", "/api/v1/credentials"): USER,
    ("DELETE", "/api/v1/credentials/{cred_id}"): USER,
    # agents and skills (issue 13)
    ("GET", "/api/v1/agents"): USER,
    ("POST", "/api/v1/agents"): USER,
    ("GET", "/api/v1/agents/{agent_id}"): USER,
    ("PUT", "/api/v1/agents/{agent_id}"): USER,
    ("DELETE", "/api/v1/agents/{agent_id}"): USER,
    ("POST", "/api/v1/agents/{agent_id}/test"): USER,
    ("POST", "/api/v1/agents/{agent_id}/chat"): USER,
    ("GET", "/api/v1/skills"): USER,
    ("GET", "/api/v1/skills/{skill_id}"): USER,
    ("POST", "/api/v1/skills"): USER,
    ("DELETE", "/api/v1/skills/{skill_id}"): USER,
    ("GET", "/api/v1/tools"): USER,  # the built-in tools an agent may name (the console's agent form)
    ("GET", "/api/v1/mcp"): USER,
    ("POST", "/api/v1/mcp"): USER,
    ("POST", "/api/v1/mcp/discover"): USER,
    ("GET", "/api/v1/mcp/{mcp_id}"): USER,
    ("DELETE", "/api/v1/mcp/{mcp_id}"): USER,
    ("GET", "/api/v1/rags"): USER,
    ("POST", "/api/v1/rags"): USER,
    ("GET", "/api/v1/rags/{rag_id}"): USER,
    ("PUT", "/api/v1/rags/{rag_id}"): USER,
    ("DELETE", "/api/v1/rags/{rag_id}"): USER,
    ("POST", "/api/v1/rags/{rag_id}/test"): USER,
    # workflows and executions (issue 14): members read and follow, editors change, execute, approve, cancel
    ("GET", "/api/v1/workflows"): USER,
    ("POST", "/api/v1/workflows"): USER,
    ("GET", "/api/v1/workflows/{workflow_id}"): USER,
    ("PUT", "/api/v1/workflows/{workflow_id}"): USER,
    ("DELETE", "/api/v1/workflows/{workflow_id}"): USER,
    ("POST", "/api/v1/workflows/{workflow_id}/execute"): USER,
    ("GET", "/api/v1/workflows/{workflow_id}/executions"): USER,
    ("GET", "/api/v1/executions"): USER,
    ("GET", "/api/v1/executions/{execution_id}"): USER,
    ("GET", "/api/v1/executions/{execution_id}/logs"): USER,
    ("GET", "/api/v1/executions/{execution_id}/stream"): USER,
    ("POST", "/api/v1/executions/{execution_id}/approve"): USER,
    ("POST", "/api/v1/executions/{execution_id}/cancel"): USER,
    # workflow schedules and inbound webhooks (issue 14); the receiver's signature is its authorization
    ("GET", "/api/v1/workflows/{workflow_id}/schedule"): USER,
    ("PUT", "/api/v1/workflows/{workflow_id}/schedule"): USER,
    ("GET", "/api/v1/schedules/preview"): USER,  # next run times of an unsaved cron (the schedule editor)
    ("POST", "/api/v1/webhooks/setup/{workflow_id}"): USER,
    ("POST", "/api/v1/webhooks/{workflow_id}"): SIGNED,
    # ---- seed 003: the compute API; sign-in by one-time code ------------------------------------------------------
    ("POST", "/api/auth/request-otp"): PUBLIC,
    ("POST", "/api/auth/verify-otp"): PUBLIC,
    ("POST", "/api/compute/api-keys/list"): COMPUTE,
    ("POST", "/api/compute/api-keys/create"): COMPUTE,
    ("POST", "/api/compute/api-keys/revoke"): COMPUTE,
    ("POST", "/api/compute/jobs/submit"): COMPUTE,
    ("POST", "/api/compute/jobs/retrieve"): COMPUTE,
    ("POST", "/api/compute/jobs/list"): COMPUTE,
    ("POST", "/api/compute/jobs/cancel"): COMPUTE,
    ("POST", "/api/compute/jobs/retry"): COMPUTE,
    ("GET", "/api/compute/jobs/{job_id}/logs"): COMPUTE,
    ("POST", "/api/compute/nodes/register"): COMPUTE,
    ("POST", "/api/compute/nodes/heartbeat"): NODE,
    ("POST", "/api/compute/nodes/poll"): NODE,
    ("POST", "/api/compute/nodes/result"): NODE,
    ("POST", "/api/compute/nodes/logs"): NODE,
    ("POST", "/api/compute/nodes/drain"): WORKER,
    ("POST", "/api/compute/nodes/list"): COMPUTE,
    ("POST", "/api/compute/nodes/rotate-key"): WORKER,
    ("POST", "/api/compute/jobs/artifacts/presign-upload"): WORKER,
    ("POST", "/api/compute/jobs/artifacts/presign-download"): WORKER,
    ("PUT", "/api/compute/artifacts/upload/{job_id}/{artifact_id}"): PUBLIC,  # the signed URL is the authorization
    ("GET", "/api/compute/artifacts/download/{job_id}/{artifact_id}"): PUBLIC,
    ("POST", "/api/compute/billing/plans/list"): COMPUTE,
    ("POST", "/api/compute/billing/subscription"): COMPUTE,
    ("POST", "/api/compute/billing/checkout/create"): COMPUTE,
    # ---- seed 004: /v0; workspaces, members and the audit log are the user's, the rest is the compute API ------
    ("POST", "/v0/workspaces"): USER,
    ("GET", "/v0/workspaces"): USER,
    ("GET", "/v0/workspaces/{project_id}"): USER,
    ("PATCH", "/v0/workspaces/{project_id}"): USER,
    ("GET", "/v0/workspaces/{project_id}/members"): USER,
    ("POST", "/v0/workspaces/{project_id}/members"): USER,
    ("GET", "/v0/workspaces/{project_id}/audit"): USER,
    ("POST", "/v0/jobs"): COMPUTE,
    ("GET", "/v0/jobs"): COMPUTE,
    ("GET", "/v0/jobs/{job_id}"): COMPUTE,
    ("POST", "/v0/jobs/{job_id}:cancel"): COMPUTE,
    ("GET", "/v0/jobs/{job_id}/logs"): COMPUTE,
    ("GET", "/v0/agents"): COMPUTE,
    ("GET", "/v0/agents/{node_id}"): COMPUTE,
    ("POST", "/v0/agents/{node_id}:drain"): COMPUTE,
    ("DELETE", "/v0/agents/{node_id}"): COMPUTE,
    ("GET", "/v0/billing/usage"): COMPUTE,
    ("GET", "/v0/billing/invoices"): COMPUTE,
    ("GET", "/v0/billing/limits"): COMPUTE,
    ("PATCH", "/v0/billing/limits"): COMPUTE,
    ("POST", "/v0/webhooks"): COMPUTE,
    ("GET", "/v0/webhooks"): COMPUTE,
    ("GET", "/v0/webhooks/{hook_id}/deliveries"): COMPUTE,
    ("DELETE", "/v0/webhooks/{hook_id}"): COMPUTE,
    ("POST", "/v0/webhooks/{hook_id}:rotate-secret"): COMPUTE,
    # ---- the API's own documents --------------------------------------------------------------------------------
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
}


def declared(method: str, path: str) -> Reach | None:
    """The route's declared reach; HEAD is a GET's."""
    return ROUTES.get((method, path)) or (ROUTES.get(("GET", path)) if method == "HEAD" else None)


def routes_of(app: Any) -> Iterator[tuple[Any, str, frozenset[str]]]:
    """Every HTTP route the app serves as (route, full path template, methods), through included routers."""
    contexts = iter_route_contexts(app.routes) if iter_route_contexts is not None else app.routes
    for context in contexts:
        path, methods = getattr(context, "path", None), getattr(context, "methods", None)
        if path and methods:
            yield getattr(context, "original_route", context), path, frozenset(methods)


def _template(request: Request) -> str:
    """The matched route's full path template. The route in the scope may be one of an included router, whose
    own path lacks the prefixes it was included under; the app's route table has them."""
    route = request.scope.get("route")
    state = request.app.state
    table: dict[int, list[str]] | None = getattr(state, "reach_templates", None)
    if table is None:
        table = {}
        for original, path, _ in routes_of(request.app):
            table.setdefault(id(original), []).append(path)
        state.reach_templates = table
    paths = table.get(id(route), [])
    if len(paths) == 1:
        return paths[0]
    for path in paths:  # one router included under several prefixes: the one this request came in by
        if compile_path(path)[0].match(request.url.path):
            return path
    return getattr(route, "path", None) or request.url.path


def reach_of(request: Request) -> tuple[Reach, str]:
    """The matched route's declared reach and its path template."""
    template = _template(request)
    found = declared(request.method, template)
    if found is None:
        log.warning("no declared reach for %s %s; only sessions and platform keys may call it",
                    request.method, template)
        return UNDECLARED, template
    return found, template


async def check(svc: Services, request: Request, principal: Principal) -> None:
    """Refuse the caller unless its kind of credential is in the route's declared reach."""
    found, template = reach_of(request)
    await enforce(svc.db, principal, found, request.method, template)
