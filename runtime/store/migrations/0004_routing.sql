-- Execution planes: owner-configured upstreams, and one evidence record per routed chat completion.
CREATE TABLE upstreams (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    key_cipher BLOB,
    updated_at TEXT NOT NULL
);

ALTER TABLE project_secrets ADD COLUMN base_url TEXT;

CREATE TABLE route_evidence (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    execution_plane TEXT NOT NULL,
    policy TEXT NOT NULL,
    privacy_tier TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    raw_joules REAL,
    estimated_joules REAL NOT NULL,
    billable_joules REAL NOT NULL,
    joules_method TEXT NOT NULL,
    fallback INTEGER NOT NULL,
    fallback_reason TEXT,
    limited_by TEXT,
    stream INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    key_id TEXT,
    user_id TEXT,
    project_id TEXT
);
CREATE INDEX route_evidence_time ON route_evidence (time);
CREATE INDEX route_evidence_key ON route_evidence (key_id, time);
