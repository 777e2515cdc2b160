-- The compute plane: worker nodes, a leased job queue with transitions and logs, artifacts, webhooks, caps.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    capacity INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL CHECK (state IN ('online', 'draining', 'offline', 'deleted')),
    version TEXT,
    registered_at TEXT NOT NULL,
    last_heartbeat_at TEXT NOT NULL
);
CREATE INDEX nodes_project ON nodes (project_id, state);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    command TEXT NOT NULL,
    env TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    priority INTEGER NOT NULL DEFAULT 0,
    timeout_seconds INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('QUEUED', 'ASSIGNED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED',
                                         'TIMED_OUT')),
    attempt INTEGER NOT NULL DEFAULT 1,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    node_id TEXT,
    lease_expires_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    runtime_ms INTEGER,
    reason TEXT,
    cpu_seconds REAL NOT NULL DEFAULT 0,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    gb_seconds REAL NOT NULL DEFAULT 0,
    created_by TEXT,
    key_id TEXT,
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    UNIQUE (project_id, idempotency_key)
);
CREATE INDEX jobs_queue ON jobs (project_id, state, priority DESC, created_at);
CREATE INDEX jobs_key ON jobs (key_id, created_at);
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at);

CREATE TABLE job_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    node_id TEXT,
    time TEXT NOT NULL
);
CREATE INDEX job_transitions_job ON job_transitions (job_id, seq);

CREATE TABLE job_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    line_no INTEGER NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    time TEXT NOT NULL,
    UNIQUE (job_id, attempt, line_no)
);

CREATE TABLE artifacts (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    created_at TEXT NOT NULL,
    uploaded_at TEXT
);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret BLOB NOT NULL,
    previous_secret BLOB,
    previous_valid_until TEXT,
    state TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
    disabled_reason TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);

CREATE TABLE billing_limits (
    project_id TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    soft_cpu_seconds REAL,
    hard_cpu_seconds REAL,
    soft_gpu_seconds REAL,
    hard_gpu_seconds REAL,
    updated_at TEXT NOT NULL
);
