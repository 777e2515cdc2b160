-- MCP servers a project connects (seed 001 `/api/v1/mcp`): how to reach each one, its env and headers sealed
-- (the values are secrets; only their names are stored in the clear) and the tools its last discovery found.
CREATE TABLE mcp_servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL CHECK (transport IN ('stdio', 'streamable_http')),
    command TEXT,
    args TEXT NOT NULL DEFAULT '[]',
    url TEXT,
    env_names TEXT NOT NULL DEFAULT '[]',
    header_names TEXT NOT NULL DEFAULT '[]',
    secrets BLOB,
    tools TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'connected', 'error')),
    last_error TEXT,
    discovered_at TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name),
    CHECK ((transport = 'stdio' AND command IS NOT NULL) OR (transport = 'streamable_http' AND url IS NOT NULL))
);
CREATE INDEX mcp_servers_project ON mcp_servers (project_id, created_at);
