-- Runtime identity and the inference request log (one row per completion or embedding call).
CREATE TABLE runtime_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE inference_requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('chat', 'embedding')),
    model TEXT NOT NULL,
    queue_class TEXT NOT NULL,
    stream INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    finish_reason TEXT,
    queue_ms REAL,
    ttft_ms REAL,
    total_ms REAL,
    cpu_seconds REAL,
    created_at TEXT NOT NULL
);
CREATE INDEX inference_requests_created ON inference_requests (created_at);
