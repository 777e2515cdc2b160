"""`/api/compute/*` (seed 003, POST-style) and `/api/auth/*` sessions. Answers: {"status", "message", "payload"}.

Each handler parses, calls runtime.compute or runtime.auth, and wraps the result; no logic lives here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

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
from runtime.api.deps import client_address, context_for, principal, services
from runtime.api.sse import job_log_stream, last_event_id
from runtime.auth.access import ADMIN, WRITE, ProjectContext, require
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.compute import billing
from runtime.compute.jobs import job_view
from runtime.compute.nodes import node_view
from runtime.errors import InvalidRequest, NotFound, TarxError

router = APIRouter(tags=["compute"])
Caller = Annotated[Principal, Depends(principal)]


def ok(payload: Any, message: str = "OK") -> dict[str, Any]:
    return {"status": "SUCCESS", "message": message, "payload": payload}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateComputeKey(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")
    max_jobs_per_hour: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="maxJobsPerHour")
    max_concurrent_jobs: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="maxConcurrentJobs")
    allowed_job_types: list[StrictStr] | None = Field(None, alias="allowedJobTypes")
    expires_at: StrictStr | None = Field(None, alias="expiresAt")


class KeyRef(_Body):
    id: StrictStr


class RequestCode(_Body):
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
async def list_compute_keys(request: Request, caller: Caller) -> dict[str, Any]:
    keys = await services(request).accounts.list_keys(caller, (KeyKind.compute,))
    return ok([compute_key_view(k) for k in keys])


@router.post("/api/compute/api-keys/create")
async def create_compute_key(body: CreateComputeKey, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
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
async def revoke_compute_key(body: KeyRef, request: Request, caller: Caller) -> dict[str, Any]:
    key = await services(request).accounts.revoke_key(caller, body.id, (KeyKind.compute,))
    return ok(compute_key_view(key), "Key revoked.")


@router.post("/api/auth/request-otp")
async def request_code(body: RequestCode, request: Request) -> dict[str, Any]:
    await services(request).accounts.request_code(body.email, client_address(request))
    # Same answer whether or not the account exists: no account enumeration.
    return ok(None, "If the account exists, a one-time code was issued; it appears in the runtime's log.")


@router.post("/api/auth/verify-otp")
async def verify_code(body: VerifyCode, request: Request) -> dict[str, Any]:
    token, expires, user = await services(request).accounts.verify_code(body.email, body.code,
                                                                        client_address(request))
    return ok({"token": token, "tokenType": "Bearer",
               "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"), "user": user.public()})


# ---- jobs ------------------------------------------------------------------------------------------------------

@router.post("/api/compute/jobs/submit")
async def submit_job(body: SubmitJob, request: Request, response: Response, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller, body.workspace_id)
    done = await svc.jobs.submit(ctx, body.spec(), request.headers.get("idempotency-key"))
    if done.warnings:
        response.headers["X-Compute-Usage-Warning"] = "; ".join(done.warnings)
    return ok(await svc.jobs.detail_of(done.job), "Job queued." if done.created else "Job already submitted.")


@router.post("/api/compute/jobs/retrieve")
async def retrieve_job(body: JobRef, request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    return ok(await services(request).jobs.detail(ctx, body.job_id))


@router.post("/api/compute/jobs/list")
async def list_jobs(body: ListJobs, request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    found, total = await services(request).jobs.list(
        ctx, states=body.state, labels=body.labels, since=body.since, until=body.until, limit=body.page_size,
        offset=(body.page - 1) * body.page_size)
    if not found:
        return {"status": "NO_DATA", "message": "No jobs match.", "payload": {"items": [], "total": total,
                                                                              "page": body.page}}
    return ok({"items": [job_view(j) for j in found], "total": total, "page": body.page, "pageSize": body.page_size})


@router.post("/api/compute/jobs/cancel")
async def cancel_job(body: JobRef, request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    svc = services(request)
    job = await svc.jobs.cancel(ctx, body.job_id)
    return ok(await svc.jobs.detail(ctx, job.id), "Cancellation requested." if not job.terminal else job.state)


@router.post("/api/compute/jobs/retry")
async def retry_job(body: JobRef, request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    svc = services(request)
    job = await svc.jobs.retry(ctx, body.job_id)
    return ok(await svc.jobs.detail(ctx, job.id), "Job requeued.")


@router.get("/api/compute/jobs/{job_id}/logs", response_model=None)
async def job_logs(job_id: str, request: Request, caller: Caller) -> Any:
    svc = services(request)
    await svc.jobs.get(await context_for(request, caller, None), job_id)
    return job_log_stream(svc.jobs, job_id, last_event_id(request), follow=True, stop=svc.stopping)


# ---- nodes -----------------------------------------------------------------------------------------------------

@router.post("/api/compute/nodes/register")
async def register_node(body: RegisterNode, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller, body.workspace_id)
    registered = await svc.nodes.register(ctx, body.name, dict(body.labels), body.capacity, body.version)
    return ok(registered, "Node registered; keep its nodeKey: it is shown once.")


@router.post("/api/compute/nodes/heartbeat")
async def node_heartbeat(body: Heartbeat, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node = await svc.nodes.authenticate(caller)
    running = [{"jobId": r.job_id, "attempt": r.attempt} for r in body.running]
    return ok(await svc.jobs.heartbeat(node, running, dict(body.labels) if body.labels is not None else None))


@router.post("/api/compute/nodes/poll")
async def node_poll(body: Poll, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node = await svc.nodes.authenticate(caller)
    polled = await svc.jobs.poll(node, body.max, body.wait_seconds)
    return ok(polled) if polled["jobs"] or polled["cancel"] else {"status": "NO_DATA", "message": "No work.",
                                                                   "payload": polled}


@router.post("/api/compute/nodes/result")
async def node_result(body: Result, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node = await svc.nodes.authenticate(caller)
    job = await svc.jobs.result(node, body.job_id, body.attempt, body.outcome())
    return ok(job_view(job), "Result recorded.")


@router.post("/api/compute/nodes/logs")
async def node_logs(body: PushLogs, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node = await svc.nodes.authenticate(caller)
    lines = [line.model_dump() for line in body.lines]
    added = await svc.jobs.push_logs(node, body.job_id, body.attempt, lines)
    return ok({"accepted": len(lines), "stored": added})


async def _node_for(request: Request, caller: Principal, body: NodeRef) -> tuple[Any, ProjectContext | None]:
    """The node itself (node key), or a node named by a user of its workspace."""
    svc = services(request)
    if caller.via == "node":
        return await svc.nodes.authenticate(caller), None
    if not body.node_id:
        raise InvalidRequest("nodeId is required", extra={"error_code": "VALIDATION_ERROR"})
    ctx = await context_for(request, caller, body.workspace_id)
    return await svc.nodes.get(ctx, body.node_id), ctx


@router.post("/api/compute/nodes/drain")
async def drain_node(body: NodeRef, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node, ctx = await _node_for(request, caller, body)
    drained = await svc.nodes.drain(caller, node, ctx)
    return ok(await node_view(svc.db, drained), "Node draining: it finishes its jobs and takes no new ones.")


@router.post("/api/compute/nodes/list")
async def list_nodes(body: NodeRef, request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    return ok(await services(request).nodes.list(ctx))


@router.post("/api/compute/nodes/rotate-key")
async def rotate_node_key(body: NodeRef, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    node, ctx = await _node_for(request, caller, body)
    if ctx is not None:
        await require(svc.db, ctx, ADMIN, "node.rotate_key")
    return ok(await svc.nodes.rotate_key(caller, node), "Key rotated; the old key no longer works.")


# ---- artifacts -------------------------------------------------------------------------------------------------

async def _job_access(request: Request, caller: Principal, job_id: str, write: bool) -> None:
    """Users of the job's workspace, or the node that holds the job."""
    svc = services(request)
    if caller.via == "node":
        node = await svc.nodes.authenticate(caller)
        job = await svc.jobs.get_any(job_id)
        if job is None or job.node_id != node.id:
            raise NotFound(f"Job '{job_id}' was not found.")
        return
    ctx = await context_for(request, caller, None)
    await svc.jobs.get(ctx, job_id)
    if write:
        await require(svc.db, ctx, WRITE, "artifact.upload")


@router.post("/api/compute/jobs/artifacts/presign-upload")
async def presign_upload(body: PresignUpload, request: Request, caller: Caller) -> dict[str, Any]:
    await _job_access(request, caller, body.job_id, write=True)
    return ok(await services(request).artifacts.presign_upload(body.job_id, body.name))


@router.post("/api/compute/jobs/artifacts/presign-download")
async def presign_download(body: PresignDownload, request: Request, caller: Caller) -> dict[str, Any]:
    await _job_access(request, caller, body.job_id, write=False)
    return ok(await services(request).artifacts.presign_download(body.job_id, body.artifact_id))


@router.put("/api/compute/artifacts/upload/{job_id}/{artifact_id}")
async def upload_artifact(job_id: str, artifact_id: str, request: Request, expires: str | None = None,
                          sig: str | None = None) -> dict[str, Any]:
    store = services(request).artifacts
    store.verify("PUT", job_id, artifact_id, expires, sig)  # the URL is the authorization
    return ok(await store.receive(job_id, artifact_id, request.stream()), "Artifact stored.")


@router.get("/api/compute/artifacts/download/{job_id}/{artifact_id}", response_model=None)
async def download_artifact(job_id: str, artifact_id: str, request: Request, expires: str | None = None,
                            sig: str | None = None) -> Any:
    store = services(request).artifacts
    store.verify("GET", job_id, artifact_id, expires, sig)
    path = store.path(job_id, artifact_id)
    if not path.is_file():
        raise NotFound("This artifact has not been uploaded.")
    sha = await store.sha256_of(job_id, artifact_id)
    return FileResponse(path, media_type="application/octet-stream", headers={"X-Artifact-Sha256": sha or ""})


# ---- billing ---------------------------------------------------------------------------------------------------

@router.post("/api/compute/billing/plans/list")
async def plans(caller: Caller) -> dict[str, Any]:
    return ok(billing.PLANS)


@router.post("/api/compute/billing/subscription")
async def subscription(caller: Caller) -> dict[str, Any]:
    return ok(billing.subscription())


@router.post("/api/compute/billing/checkout/create")
async def checkout(caller: Caller) -> dict[str, Any]:
    raise TarxError("Checkout is not available on a local runtime: it runs on the Hobby (local only) plan, with "
                    "nothing to buy. Hosted plans are bought from the hosted service.", status=400,
                    code="checkout_unavailable")
