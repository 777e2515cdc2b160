"""Seed 000's `GET /v1/rag/status` and `GET`/`POST /v1/rag/jobs` (runtime/rag/jobs.py holds the rules)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Caller, Svc, context_for, inference_principal
from runtime.rag import jobs

router = APIRouter(prefix="/v1/rag", tags=["rag"])


class RagJobBody(Body):
    # Plain strings: the job rules answer unknown values with their own codes (invalid_job_class, ...).
    job_class: Annotated[StrictStr, Field(max_length=100)]
    data_boundary: Annotated[StrictStr, Field(max_length=100)]
    privacy_tier: Annotated[StrictStr, Field(max_length=50)] = "private"
    account_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    query: Annotated[StrictStr, Field(min_length=1, max_length=2000)] | None = None
    source_ids: Annotated[list[Annotated[StrictStr, Field(max_length=100)]], Field(min_length=1,
                                                                                     max_length=20)] | None = None
    # The bundled embedder takes 512 tokens: a longer document is scored by its start (RagService.embed).
    documents: Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=1000)]],
                         Field(min_length=1, max_length=100)] | None = None
    k: Annotated[int, Field(ge=1, le=50)] = 5


# The two contracts read like /v1/capacity: anonymous on a loopback bind unless settings ask for a key (seed 000's
# status curl sends none). Submitting a job always needs one: its account is checked against the caller's.
needs_caller = [Depends(inference_principal)]


@router.get("/status", dependencies=needs_caller)
async def rag_status(svc: Svc) -> dict[str, Any]:
    index, embedder = await svc.rag.health()
    return jobs.status(svc.rag, index_reachable=index, embedding_ready=embedder)


@router.get("/jobs", dependencies=needs_caller)
async def rag_jobs_contract() -> dict[str, Any]:
    return jobs.contract()


@router.post("/jobs")
async def submit_rag_job(body: RagJobBody, request: Request, svc: Svc, caller: Caller) -> dict[str, Any]:
    job = jobs.RagJob(job_class=body.job_class, data_boundary=body.data_boundary, privacy_tier=body.privacy_tier,
                      account_id=body.account_id, query=body.query, source_ids=body.source_ids,
                      documents=body.documents, k=body.k)
    return await jobs.run(svc.rag, lambda: context_for(request, caller), job, caller.user.id)
