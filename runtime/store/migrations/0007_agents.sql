-- Agents (issue 13): one row per agent, inside a project. The lists (built-in tool names, RAG source ids, skill
-- ids) are JSON arrays of strings.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    instructions TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    execution_policy TEXT NOT NULL DEFAULT 'local',
    temperature REAL NOT NULL,
    max_tokens INTEGER NOT NULL,
    tool_choice TEXT NOT NULL DEFAULT 'auto',
    tools TEXT NOT NULL DEFAULT '[]',
    rag_source_ids TEXT NOT NULL DEFAULT '[]',
    skills TEXT NOT NULL DEFAULT '[]',
    created_by TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX agents_by_project ON agents (project_id, created_at);
