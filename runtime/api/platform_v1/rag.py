"""`/api/v1/rags`: RAG sources (seed 001), read by any member, written by editors; `POST /rags/{id}/test` runs a
hybrid retrieval against one source. The work is runtime/rag's `RagService`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Svc, requires
from runtime.api.platform_v1.shapes import Name, Page, PerPage, page
from runtime.auth.access import READ, WRITE, ProjectContext, require_owner
from runtime.rag import Hit

router = APIRouter()

Reader = Annotated[ProjectContext, requires(READ, "rag.read")]
Writer = Annotated[ProjectContext, requires(WRITE, "rag.write")]
Description = Annotated[StrictStr, Field(max_length=2000)]


class CreateRag(Body):
    name: Name
    description: Description = ""
    kind: Literal["text", "directory", "url"] = "text"
    # text: {"text": "..."}; directory: {"path": "/a/directory/on/the/runtime's/disk"}; url: {"url": "https://..."}
    config: dict[str, Any]
    embedding_model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None


class UpdateRag(Body):
    name: Name | None = None
    description: Description | None = None
    config: dict[str, Any] | None = None


class TestRag(Body):
    query: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    k: Annotated[int, Field(ge=1, le=50)] = 5


def view(source: dict[str, Any]) -> dict[str, Any]:
    return {key: source[key] for key in ("id", "name", "description", "kind", "config", "embedding_model", "state",
                                         "error", "documents", "chunks", "created_at", "updated_at", "indexed_at")}


def hit_view(hit: Hit) -> dict[str, Any]:
    return {"chunk_id": hit.chunk_id, "source_id": hit.source_id, "document": hit.document, "text": hit.text,
            "score": hit.score, "bm25_rank": hit.bm25_rank, "vector_rank": hit.vector_rank}


def _may_read_disk(ctx: ProjectContext, kind: str) -> None:
    if kind == "directory":  # a directory source reads the host's files: the runtime's owner alone may add one
        require_owner(ctx.principal, "Only the runtime's owner may add or change a directory source.")


@router.get("/rags")
async def list_rags(svc: Svc, ctx: Reader, page_no: Page = 1, per_page: PerPage = 20) -> dict[str, Any]:
    return page([view(s) for s in await svc.rag.list(ctx)], page_no, per_page)


@router.post("/rags", status_code=201)
async def create_rag(body: CreateRag, svc: Svc, ctx: Writer) -> dict[str, Any]:
    _may_read_disk(ctx, body.kind)
    return view(await svc.rag.create(ctx, created_by=ctx.principal.user.id, name=body.name,
                                     description=body.description, kind=body.kind, config=body.config,
                                     embedding_model=body.embedding_model))


@router.get("/rags/{rag_id}")
async def get_rag(rag_id: str, svc: Svc, ctx: Reader) -> dict[str, Any]:
    return view(await svc.rag.get(ctx, rag_id))


@router.put("/rags/{rag_id}")
async def update_rag(rag_id: str, body: UpdateRag, svc: Svc, ctx: Writer) -> dict[str, Any]:
    if body.config is not None:
        _may_read_disk(ctx, (await svc.rag.get(ctx, rag_id))["kind"])
    return view(await svc.rag.update(ctx, rag_id, name=body.name, description=body.description, config=body.config))


@router.delete("/rags/{rag_id}", status_code=204)
async def delete_rag(rag_id: str, svc: Svc, ctx: Writer) -> Response:
    await svc.rag.delete(ctx, rag_id)
    return Response(status_code=204)


@router.post("/rags/{rag_id}/test")
async def test_rag(rag_id: str, body: TestRag, svc: Svc, ctx: Reader) -> dict[str, Any]:
    source = await svc.rag.get(ctx, rag_id)
    hits = await svc.rag.search(ctx, [rag_id], body.query, body.k)
    return {"id": rag_id, "state": source["state"], "query": body.query, "hits": [hit_view(h) for h in hits]}
