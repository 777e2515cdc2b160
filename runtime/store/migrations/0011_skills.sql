-- Project skills (issue 13): prompt and model bundles made in a project, listed beside the built-in ones
-- (runtime/skills/builtin/*.toml), and an agent's own BYOK LLM key: the project secret (kind llm_key) its
-- enterprise-plane calls use instead of the project's default upstream.
CREATE TABLE project_skills (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    prompt TEXT NOT NULL,
    model TEXT,
    created_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

ALTER TABLE agents ADD COLUMN llm_key_id TEXT;
