-- Workflow triggers (issue 14): cron schedules and signed inbound webhooks. Each belongs to one workflow (0009)
-- and goes with it. The scheduler's jobs are rebuilt from workflow_schedules at every start: this table, not
-- APScheduler's memory, is the truth.
CREATE TABLE workflow_schedules (
    workflow_id TEXT PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    -- who set the schedule: its executions run as them
    actor_user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    last_fired_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One inbound webhook per workflow. `secret` is the Standard Webhooks secret (whsec_…) sealed with the runtime's
-- SecretBox: the plaintext is in the setup answer and nowhere else.
CREATE TABLE workflow_webhooks (
    workflow_id TEXT PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    secret BLOB NOT NULL,
    actor_user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL
);

-- Message ids already accepted (the replay defence), kept until their timestamp could no longer pass the
-- 5-minute tolerance anyway.
CREATE TABLE workflow_webhook_messages (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (workflow_id, message_id)
);

CREATE INDEX workflow_webhook_messages_by_expiry ON workflow_webhook_messages (expires_at);
