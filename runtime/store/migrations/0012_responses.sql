-- Stored Responses API responses (issue 16): what GET /v1/responses/{id} returns and what previous_response_id
-- continues. One row per response, readable only by the caller who created it (user_id; NULL for anonymous calls
-- on a loopback bind). `request` holds the request fields a response echoes, `output` its output items,
-- `conversation` the whole exchange as chat messages (without instructions, which OpenAI does not carry over),
-- `usage` its token counts; all JSON.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    created_at INTEGER NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    incomplete_reason TEXT,
    previous_response_id TEXT,
    evidence_id TEXT,
    request TEXT NOT NULL,
    output TEXT NOT NULL,
    conversation TEXT NOT NULL,
    usage TEXT NOT NULL
);

CREATE INDEX responses_by_user ON responses (user_id, created_at);
