-- RAG sources (seed 001 /api/v1/rags), their documents and chunks. Chunk text is indexed in FTS5 (BM25); chunk
-- vectors are float32 blobs scanned with numpy (this Python's sqlite3 cannot load extensions such as sqlite-vec).
CREATE TABLE rag_sources (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    embedding_model TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    documents INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    indexed_at TEXT
);
CREATE INDEX rag_sources_project ON rag_sources (project_id, created_at);

CREATE TABLE rag_documents (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES rag_sources (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    indexed_at TEXT NOT NULL,
    UNIQUE (source_id, path)
);

CREATE TABLE rag_chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX rag_chunks_source ON rag_chunks (source_id);
CREATE INDEX rag_chunks_document ON rag_chunks (document_id);

-- rowid = rag_chunks.id; kept in step by runtime/store/rag.py in the same transaction.
CREATE VIRTUAL TABLE rag_fts USING fts5 (text, tokenize = 'porter unicode61');
