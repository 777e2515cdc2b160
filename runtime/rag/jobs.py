"""Seed 000's `/v1/rag/status` and `/v1/rag/jobs`: the retrieval truth contract of this runtime, and the
account/private-boundary RAG job rules. What this runtime runs itself (a rerank on the `computer` boundary) runs
here for real; every other valid job answers `rag_job_runner_not_live`, as the seed says, never a pretend result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.auth.access import ProjectContext
from runtime.errors import InvalidRequest, TarxError
from runtime.inference.planes import TIERS
from runtime.rag.service import RagService

if TYPE_CHECKING:
    import numpy as np

JOB_CLASSES = ("account_or_private_rerank", "account_or_private_graph_summary", "account_or_private_visual_rag")
DATA_BOUNDARIES = {
    "computer": "this machine only: the local runtime's own index and models",
    "account_supercomputer_sync": "encrypted account-scoped state synced across one account's devices",
    "private_supercomputer": "sharded inside a customer-approved private network",
    "global_public_only": "public or explicitly mesh-safe context only; never private memory",
}
# Tiers whose content is private: never allowed on the global/public boundary.
PRIVATE_TIERS = ("personal", "private")
ACCOUNT_BOUNDARIES = ("account_supercomputer_sync", "private_supercomputer")
# What runs here: (job class, boundary) pairs this runtime executes itself.
LIVE_HERE = {("account_or_private_rerank", "computer")}
RERANK_DEPTH = 20


class RunnerNotLive(TarxError):
    """A valid job this runtime cannot run: the seed's answer, not a failure of the request."""

    status, type, code = 501, "server_error", "rag_job_runner_not_live"


class BoundaryViolation(TarxError):
    status, type, code = 403, "permission_error", "rag_data_boundary_violation"


@dataclass(frozen=True)
class RagJob:
    job_class: str
    data_boundary: str
    privacy_tier: str
    account_id: str | None
    query: str | None
    source_ids: list[str] | None
    documents: list[str] | None
    k: int


def status(rag: RagService, *, index_reachable: bool, embedding_ready: bool) -> dict[str, Any]:
    """The seed's status contract, filled with what this runtime actually has."""
    live = "live_here"
    return {
        "object": "rag.status",
        "runtime": "local",
        # The seed's Bridge fields: on this runtime the Bridge is the runtime itself, so reachability is the
        # local index's (the SQLite tables answer) and search's (the index answers and an embedder is there).
        "bridge_health_reachable": index_reachable,
        "bridge_memory_search_reachable": index_reachable and embedding_ready,
        "bridge_unified_search_reachable": index_reachable and embedding_ready,
        "local_index": {
            "reachable": index_reachable,
            "store": "sqlite",
            "lexical": "fts5_bm25",
            "vectors": rag.vector_backend,
            "embedding_model": rag.default_model,
            "embedding_model_available": embedding_ready,
        },
        "modes": {
            "lexical_bm25": live,
            "dense_vector": live,
            "hybrid_rrf": live,
            "rerank": live,  # POST /v1/rag/jobs, account_or_private_rerank on the computer boundary
            "graph_summary": "planned",
            "visual_rag": "planned",
            "cross_device_sync": "planned",
            "shared_global_private_memory": "never",
        },
        "data_boundaries": list(DATA_BOUNDARIES),
        "failure_class_when_unreachable": "retrieval_unavailable",
    }


def contract() -> dict[str, Any]:
    """GET /v1/rag/jobs: the runner contract, and which parts of it run on this runtime."""
    return {
        "object": "rag.jobs",
        "job_classes": {cls: {"live_here_on": [b for (c, b) in LIVE_HERE if c == cls]} for cls in JOB_CLASSES},
        "data_boundaries": DATA_BOUNDARIES,
        "privacy_tiers": list(TIERS),
        "rules": [
            "data_boundary is one of " + ", ".join(DATA_BOUNDARIES),
            "personal and private content (and any project RAG source) is refused on global_public_only",
            "account_id is required on account_supercomputer_sync and private_supercomputer, and must be the "
            "caller's own account",
        ],
        "not_live_code": RunnerNotLive.code,
        "data": [],  # local jobs run synchronously; nothing is queued
    }


def validate(job: RagJob, caller_account: str) -> None:
    """The seed's boundary rules; raises before anything runs."""
    if job.job_class not in JOB_CLASSES:
        raise InvalidRequest(f"job_class must be one of {list(JOB_CLASSES)}", code="invalid_job_class")
    if job.data_boundary not in DATA_BOUNDARIES:
        raise InvalidRequest(f"data_boundary must be one of {list(DATA_BOUNDARIES)}", code="invalid_data_boundary")
    if job.privacy_tier not in TIERS:
        raise InvalidRequest(f"privacy_tier must be one of {list(TIERS)}", code="invalid_privacy_tier")
    if job.data_boundary == "global_public_only":
        if job.privacy_tier in PRIVATE_TIERS:
            raise BoundaryViolation(f"'{job.privacy_tier}' content may not be submitted with data_boundary "
                                    "global_public_only; that boundary is only for public or mesh-safe context.")
        if job.source_ids:
            raise BoundaryViolation("Project RAG sources are private memory and may not be used with data_boundary "
                                    "global_public_only.")
    if job.data_boundary in ACCOUNT_BOUNDARIES:
        if not job.account_id:
            raise InvalidRequest(f"account_id is required with data_boundary {job.data_boundary}.",
                                 code="account_required")
    if job.account_id is not None and job.account_id != caller_account:
        raise BoundaryViolation("account_id must be the caller's own account.", code="account_mismatch")


async def run(rag: RagService, project_of: Callable[[], Awaitable[ProjectContext]], job: RagJob,
              caller_account: str) -> dict[str, Any]:
    """Validate, then run the job if this runtime runs it; `project_of` resolves the caller's project, only when
    the job reads the project's sources (after the boundary rules, so a refused job never needs one)."""
    validate(job, caller_account)
    if (job.job_class, job.data_boundary) not in LIVE_HERE:
        raise RunnerNotLive(
            f"{job.job_class} on the {job.data_boundary} boundary is a planned contract; this runtime runs only "
            + ", ".join(f"{c} on {b}" for c, b in sorted(LIVE_HERE)) + ".",
            extra={"job_class": job.job_class, "data_boundary": job.data_boundary})
    if not job.query:
        raise InvalidRequest("A rerank needs query.", code="query_required")
    if bool(job.documents) == bool(job.source_ids):
        raise InvalidRequest("A rerank needs either documents (texts) or source_ids (RAG sources), not both.")
    started = time.perf_counter()
    candidates: list[dict[str, Any]]
    if job.documents:
        candidates = [{"index": i, "text": t} for i, t in enumerate(job.documents)]
    else:
        project = await project_of()
        for source_id in job.source_ids or []:
            await rag.get(project, source_id)  # 404 for a source that is not this project's
        hits = await rag.search(project, job.source_ids, job.query, max(RERANK_DEPTH, job.k))
        candidates = [{"chunk_id": h.chunk_id, "source_id": h.source_id, "document": h.document, "text": h.text,
                       "first_stage_rank": place} for place, h in enumerate(hits, start=1)]
    scores = await _cosines(rag, job.query, [c["text"] for c in candidates])
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: job.k]  # stable: ties keep first-stage order
    results = [{**candidates[i], "rank": rank, "score": float(scores[i])} for rank, i in enumerate(order, start=1)]
    return {
        "object": "rag.job", "status": "completed", "job_class": job.job_class, "data_boundary": job.data_boundary,
        "privacy_tier": job.privacy_tier, "execution_plane": "local", "reranker": "bi_encoder_cosine",
        "model": rag.default_model, "candidates": len(candidates), "results": results,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


async def _cosines(rag: RagService, query: str, texts: list[str]) -> Sequence[float]:
    if not texts:
        return []
    blobs = await rag.embed(rag.default_model, [query, *texts])
    return await asyncio.to_thread(_cosines_of, blobs)  # numpy off the event loop, as retrieval's scan


def _cosines_of(blobs: list[bytes]) -> np.ndarray:
    """Cosine of each vector after the first to the first (the query)."""
    import numpy as np  # on first use: an API process that never retrieves does not map numpy (15 MiB)
    vectors = np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors[1:] @ vectors[0]
