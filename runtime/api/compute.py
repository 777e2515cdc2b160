"""`/api/compute/*` (seed 003, POST-style) and `/api/auth/*` sessions. Answers: {"status", "message", "payload"}.

Each handler parses, calls one service method of runtime.compute or runtime.auth, and wraps the result; no logic
lives here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import Field, StrictInt, StrictStr

from runtime.api.bodies import Body
from runtime.api.compute_models import (
    Heartbeat,
    JobRef,
    ListJobs,
    NodeRef,
    Poll,
    PresignDownload,
    PresignUpload,
    PushLogs,
    RegisterNode,
    Result,
    SubmitJob,
)
from runtime.api.deps import Caller, ClientAddress, Project, Svc, context_for
from runtime.api.sse import job_log_stream, last_event_id
from runtime.auth.access import WRITE, require
from runtime.auth.keys import KeyKind
from runtime.compute import billing
from runtime.compute.jobs import job_view
from runtime.store.jobs import TERMINAL
from runtime.store.nodes import Node

router = APIRouter(tags=["compute"])


async def node_caller(svc: Svc, caller: Caller) -> Node:
    """The node behind the caller's node key (401 for any other credential)."""
    return await svc.nodes.authenticate(caller)


NodeCaller = Annotated[Node, Depends(node_caller)]


def ok(payload: Any, message: str = "OK") -> dict[str, Any]:
    return {"status": "SUCCESS", "message": message, "payload": payload}


Quota = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class CreateComputeKey(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")
    max_jobs_per_hour: Quota | None = Field(None, alias="maxJobsPerHour")
    max_concurrent_jobs: Quota | None = Field(None, alias="maxConcurrentJobs")
    allowed_job_types: list[StrictStr] | None = Field(None, alias="allowedJobTypes")
    expires_at: StrictStr | None = Field(None, alias="expiresAt")


class KeyRef(Body):
    id: StrictStr


class RequestCode(Body):
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
async def list_compute_keys(svc: Svc, caller: Caller) -> dict[str, Any]:
    keys = await svc.accounts.list_keys(caller, (KeyKind.compute,))
    return ok([compute_key_view(k) for k in keys])


@router.post("/api/compute/api-keys/create")
async def create_compute_key(body: CreateComputeKey, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    await require(svc.db, ctx, WRITE, "key.create")
    quotas = {"maxJobsPerHour": body.max_jobs_per_hour, "maxConcurrentJobs": body.max_concurrent_jobs,
              "allowedJobTypes": body.allowed_job_types}
    minted = await svc.accounts.create_key(caller, KeyKind.compute, body.name, project_id=ctx.project.id,
                                           quotas={k: v for k, v in quotas.items() if v is not None},
                                           expires_at=body.expires_at)
    return ok({**compute_key_view(minted.key), "key": minted.plaintext},
              "Key created; this is the only time it is shown.")


@router.post("/api/compute/api-keys/revoke")
async def revoke_compute_key(body: KeyRef, svc: Svc, caller: Caller) -> dict[str, Any]:
    key = await svc.accounts.revoke_key(caller, body.id, (KeyKind.compute,))
    return ok(compute_key_view(key), "Key revoked.")


@router.post("/api/auth/request-otp")
async def request_code(body: RequestCode, svc: Svc, client: ClientAddress) -> dict[str, Any]:
    await svc.accounts.request_code(body.email, client)
    # Same answer whether or not the account exists: no account enumeration.
    return ok(None, "If the account exists, a one-time code was issued; it appears in the runtime's log.")


@router.post("/api/auth/verify-otp")
async def verify_code(body: VerifyCode, svc: Svc, client: ClientAddress) -> dict[str, Any]:
    token, expires, user = await svc.accounts.verify_code(body.email, body.code, client)
    return ok({"token": token, "tokenType": "Bearer",
               "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"), "user": user.public()})


# ---- jobs ------------------------------------------------------------------------------------------------------

@router.post("/api/compute/jobs/submit")
async def submit_job(body: SubmitJob, request: Request, response: Response, svc: Svc, caller: Caller
                     ) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    done = await svc.jobs.submit(ctx, body.spec(), request.headers.get("idempotency-key"))
    if done.warnings:
        response.headers["X-Compute-Usage-Warning"] = "; ".join(done.warnings)
    return ok(done.detail, "Job queued." if done.created else "Job already submitted.")


@router.post("/api/compute/jobs/retrieve")
async def retrieve_job(body: JobRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    return ok(await svc.jobs.detail(await context_for(request, caller, body.workspace_id), body.job_id))


@router.post("/api/compute/jobs/list")
async def list_jobs(body: ListJobs, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    found, total = await svc.jobs.list(ctx, states=body.state, labels=body.labels, since=body.since,
                                       until=body.until, limit=body.page_size, offset=(body.page - 1) * body.page_size)
    if not found:
        return {"status": "NO_DATA", "message": "No jobs match.", "payload": {"items": [], "total": total,
                                                                              "page": body.page}}
    return ok({"items": [job_view(j) for j in found], "total": total, "page": body.page, "pageSize": body.page_size})


@router.post("/api/compute/jobs/cancel")
async def cancel_job(body: JobRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    job = await svc.jobs.cancel(await context_for(request, caller, body.workspace_id), body.job_id)
    return ok(job, job["state"] if job["state"] in TERMINAL else "Cancellation requested.")


@router.post("/api/compute/jobs/retry")
async def retry_job(body: JobRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    return ok(await svc.jobs.retry(await context_for(request, caller, body.workspace_id), body.job_id),
              "Job requeued.")


@router.get("/api/compute/jobs/{job_id}/logs", response_model=None)
async def job_logs(job_id: str, request: Request, svc: Svc, ctx: Project) -> Any:
    return job_log_stream(await svc.jobs.logs(ctx, job_id, last_event_id(request), follow=True, stop=svc.stopping))


# ---- nodes -----------------------------------------------------------------------------------------------------

@router.post("/api/compute/nodes/register")
async def register_node(body: RegisterNode, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    registered = await svc.nodes.register(ctx, body.name, dict(body.labels), body.capacity, body.version)
    return ok(registered, "Node registered; keep its nodeKey: it is shown once.")


@router.post("/api/compute/nodes/heartbeat")
async def node_heartbeat(body: Heartbeat, svc: Svc, node: NodeCaller) -> dict[str, Any]:
    running = [{"jobId": r.job_id, "attempt": r.attempt} for r in body.running]
    return ok(await svc.jobs.heartbeat(node, running, dict(body.labels) if body.labels is not None else None))


@router.post("/api/compute/nodes/poll")
async def node_poll(body: Poll, svc: Svc, node: NodeCaller) -> dict[str, Any]:
    polled = await svc.jobs.poll(node, body.max, body.wait_seconds)
    return ok(polled) if polled["jobs"] or polled["cancel"] else {"status": "NO_DATA", "message": "No work.",
                                                                   "payload": polled}


@router.post("/api/compute/nodes/result")
async def node_result(body: Result, svc: Svc, node: NodeCaller) -> dict[str, Any]:
    job = await svc.jobs.result(node, body.job_id, body.attempt, body.outcome())
    return ok(job_view(job), "Result recorded.")


@router.post("/api/compute/nodes/logs")
async def node_logs(body: PushLogs, svc: Svc, node: NodeCaller) -> dict[str, Any]:
    lines = [line.model_dump() for line in body.lines]
    added = await svc.jobs.push_logs(node, body.job_id, body.attempt, lines)
    return ok({"accepted": len(lines), "stored": added})


@router.post("/api/compute/nodes/drain")
async def drain_node(body: NodeRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    drained = await svc.nodes.drain_as(caller, body.node_id, lambda: context_for(request, caller, body.workspace_id))
    return ok(drained, "Node draining: it finishes its jobs and takes no new ones.")


@router.post("/api/compute/nodes/list")
async def list_nodes(body: NodeRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    return ok(await svc.nodes.list(await context_for(request, caller, body.workspace_id)))


@router.post("/api/compute/nodes/rotate-key")
async def rotate_node_key(body: NodeRef, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    rotated = await svc.nodes.rotate_key_as(caller, body.node_id,
                                            lambda: context_for(request, caller, body.workspace_id))
    return ok(rotated, "Key rotated; the old key no longer works.")


# ---- artifacts -------------------------------------------------------------------------------------------------

@router.post("/api/compute/jobs/artifacts/presign-upload")
async def presign_upload(body: PresignUpload, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    return ok(await svc.artifacts.presign_upload(caller, body.job_id, body.name,
                                                 lambda: context_for(request, caller)))


@router.post("/api/compute/jobs/artifacts/presign-download")
async def presign_download(body: PresignDownload, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    return ok(await svc.artifacts.presign_download(caller, body.job_id, body.artifact_id,
                                                   lambda: context_for(request, caller)))


@router.put("/api/compute/artifacts/upload/{job_id}/{artifact_id}")
async def upload_artifact(job_id: str, artifact_id: str, request: Request, svc: Svc, expires: str | None = None,
                          sig: str | None = None) -> dict[str, Any]:
    # No credentials: the signed URL is the authorization.
    return ok(await svc.artifacts.receive(job_id, artifact_id, expires, sig, request.stream()), "Artifact stored.")


@router.get("/api/compute/artifacts/download/{job_id}/{artifact_id}", response_model=None)
async def download_artifact(job_id: str, artifact_id: str, svc: Svc, expires: str | None = None,
                            sig: str | None = None) -> Any:
    path, sha = await svc.artifacts.download(job_id, artifact_id, expires, sig)
    return FileResponse(path, media_type="application/octet-stream", headers={"X-Artifact-Sha256": sha or ""})


# ---- billing ---------------------------------------------------------------------------------------------------

@router.post("/api/compute/billing/plans/list")
async def plans(caller: Caller) -> dict[str, Any]:
    return ok(billing.PLANS)


@router.post("/api/compute/billing/subscription")
async def subscription(caller: Caller) -> dict[str, Any]:
    return ok(billing.subscription())


@router.post("/api/compute/billing/checkout/create")
async def checkout(caller: Caller) -> None:
    billing.checkout()  # always refused: nothing to buy on a local runtime
