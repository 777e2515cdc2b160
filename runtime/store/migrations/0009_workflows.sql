-- Workflows and executions (issue 14). A workflow's nodes and edges are JSON arrays; every update bumps `version`.
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    nodes TEXT NOT NULL DEFAULT '[]',
    edges TEXT NOT NULL DEFAULT '[]',
    version INTEGER NOT NULL DEFAULT 1,
    created_by TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX workflows_by_project ON workflows (project_id, created_at);

-- One run of a workflow. `graph` is the nodes and edges of the version it ran (a later edit never changes a run,
-- and a run resumed after a restart continues the same graph). Ids are time-ordered: cursor pagination is by id.
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    workflow_version INTEGER NOT NULL,
    graph TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    reason TEXT,
    actor_user_id TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    updated_at TEXT NOT NULL
);

CREATE INDEX executions_by_project ON executions (project_id, id);
CREATE INDEX executions_by_workflow ON executions (workflow_id, id);
CREATE INDEX executions_by_status ON executions (status, completed_at);

-- Per node of an execution: its state, what it was given and produced, its attempts and duration.
CREATE TABLE execution_nodes (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    completed_at TEXT,
    duration_ms INTEGER,
    PRIMARY KEY (execution_id, node_id)
) WITHOUT ROWID;

-- The execution's event stream, numbered per execution: a client reconnecting with Last-Event-ID misses nothing.
CREATE TABLE execution_events (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
