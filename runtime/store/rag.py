"""RAG sources, their documents and chunks: chunk text in FTS5 (BM25), chunk vectors as float32 blobs. Every read
of chunks is filtered by project in SQL, so one project never sees another's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

COLUMNS = ("id, project_id, name, description, kind, config, embedding_model, state, error, documents, chunks, "
           "created_by, created_at, updated_at, indexed_at")


def _source(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["config"] = json.loads(out["config"])
    return out


def _in(ids: Sequence[Any]) -> str:
    return ", ".join("?" for _ in ids)


async def insert_source(tx: aiosqlite.Connection, *, project_id: str, name: str, description: str, kind: str,
                        config: dict[str, Any], embedding_model: str, created_by: str) -> dict[str, Any]:
    now = utcnow()
    source_id = new_id("rag")
    await tx.execute(
        f"INSERT INTO rag_sources ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'indexing', NULL, 0, 0, ?, ?, ?, NULL)",
        (source_id, project_id, name, description, kind, json.dumps(config), embedding_model, created_by, now, now))
    found = await get_source(tx, project_id, source_id)
    assert found is not None
    return found


async def get_source(db: Database | aiosqlite.Connection, project_id: str, source_id: str) -> dict[str, Any] | None:
    async with connection(db).execute(f"SELECT {COLUMNS} FROM rag_sources WHERE id = ? AND project_id = ?",
                                      (source_id, project_id)) as cur:
        row = await cur.fetchone()
    return _source(row) if row else None


async def list_sources(db: Database, project_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(f"SELECT {COLUMNS} FROM rag_sources WHERE project_id = ? ORDER BY created_at, id",
                             (project_id,))
    return [_source(r) for r in rows]


async def all_sources(db: Database, kind: str) -> list[dict[str, Any]]:
    """Every source of one kind, in every project (the directory watchers resume at start)."""
    rows = await db.fetchall(f"SELECT {COLUMNS} FROM rag_sources WHERE kind = ? ORDER BY created_at", (kind,))
    return [_source(r) for r in rows]


async def update_source(tx: aiosqlite.Connection, project_id: str, source_id: str, *, name: str, description: str,
                        config: dict[str, Any]) -> None:
    await tx.execute("UPDATE rag_sources SET name = ?, description = ?, config = ?, updated_at = ? "
                     "WHERE id = ? AND project_id = ?",
                     (name, description, json.dumps(config), utcnow(), source_id, project_id))


async def set_state(tx: aiosqlite.Connection, source_id: str, state: str, error: str | None = None) -> None:
    """The source's indexing state, with its document and chunk counts recounted."""
    indexed = utcnow() if state == "ready" else None
    await tx.execute(
        "UPDATE rag_sources SET state = ?, error = ?, indexed_at = COALESCE(?, indexed_at), "
        "documents = (SELECT COUNT(*) FROM rag_documents WHERE source_id = ?), "
        "chunks = (SELECT COUNT(*) FROM rag_chunks WHERE source_id = ?) WHERE id = ?",
        (state, error, indexed, source_id, source_id, source_id))


async def delete_source(tx: aiosqlite.Connection, project_id: str, source_id: str) -> bool:
    await tx.execute("DELETE FROM rag_fts WHERE rowid IN (SELECT id FROM rag_chunks WHERE source_id = ? "
                     "AND project_id = ?)", (source_id, project_id))
    await tx.execute("DELETE FROM rag_chunks WHERE source_id = ? AND project_id = ?", (source_id, project_id))
    cur = await tx.execute("DELETE FROM rag_sources WHERE id = ? AND project_id = ?", (source_id, project_id))
    return cur.rowcount > 0


async def digests(db: Database, source_id: str) -> dict[str, str]:
    """path -> content digest of every document indexed for the source."""
    rows = await db.fetchall("SELECT path, digest FROM rag_documents WHERE source_id = ?", (source_id,))
    return {r["path"]: r["digest"] for r in rows}


async def delete_document(tx: aiosqlite.Connection, source_id: str, path: str) -> None:
    async with tx.execute("SELECT id FROM rag_documents WHERE source_id = ? AND path = ?", (source_id, path)) as cur:
        row = await cur.fetchone()
    if row is None:
        return
    await tx.execute("DELETE FROM rag_fts WHERE rowid IN (SELECT id FROM rag_chunks WHERE document_id = ?)",
                     (row["id"],))
    await tx.execute("DELETE FROM rag_chunks WHERE document_id = ?", (row["id"],))
    await tx.execute("DELETE FROM rag_documents WHERE id = ?", (row["id"],))


async def replace_document(tx: aiosqlite.Connection, *, project_id: str, source_id: str, path: str, digest: str,
                           chunks: Sequence[tuple[str, bytes]]) -> None:
    """The document's chunks (text, float32 vector blob), replacing whatever was indexed for its path."""
    await delete_document(tx, source_id, path)
    cur = await tx.execute("INSERT INTO rag_documents (source_id, path, digest, indexed_at) VALUES (?, ?, ?, ?)",
                           (source_id, path, digest, utcnow()))
    document_id = cur.lastrowid
    for ordinal, (text, vector) in enumerate(chunks):
        cur = await tx.execute(
            "INSERT INTO rag_chunks (document_id, source_id, project_id, ordinal, text, vector) "
            "VALUES (?, ?, ?, ?, ?, ?)", (document_id, source_id, project_id, ordinal, text, vector))
        await tx.execute("INSERT INTO rag_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, text))


async def vectors(db: Database, project_id: str, source_id: str) -> list[tuple[int, bytes]]:
    rows = await db.fetchall("SELECT id, vector FROM rag_chunks WHERE project_id = ? AND source_id = ? ORDER BY id",
                             (project_id, source_id))
    return [(r["id"], r["vector"]) for r in rows]


async def bm25(db: Database, project_id: str, source_ids: Sequence[str], match: str, limit: int) -> list[int]:
    """Chunk ids best first by FTS5's BM25 for an FTS5 `match` expression, within the project's sources."""
    if not source_ids:
        return []
    rows = await db.fetchall(
        "SELECT c.id FROM rag_fts JOIN rag_chunks c ON c.id = rag_fts.rowid "
        f"WHERE rag_fts MATCH ? AND c.project_id = ? AND c.source_id IN ({_in(source_ids)}) "
        "ORDER BY bm25(rag_fts) LIMIT ?", (match, project_id, *source_ids, limit))
    return [r["id"] for r in rows]


async def chunks(db: Database, project_id: str, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not chunk_ids:
        return {}
    rows = await db.fetchall(
        "SELECT c.id, c.source_id, c.ordinal, c.text, d.path FROM rag_chunks c "
        f"JOIN rag_documents d ON d.id = c.document_id WHERE c.project_id = ? AND c.id IN ({_in(chunk_ids)})",
        (project_id, *chunk_ids))
    return {r["id"]: dict(r) for r in rows}


async def reachable(db: Database) -> bool:
    """The RAG tables answer (the status route's local index reachability)."""
    try:
        await db.fetchall("SELECT 1 FROM rag_chunks LIMIT 1")
        await db.fetchall("SELECT rowid FROM rag_fts LIMIT 1")
    except Exception:
        return False
    return True
