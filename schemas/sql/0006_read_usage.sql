-- Read model of the usage projection: one row per chat call, from chat.completion.* events.
CREATE TABLE read.chat_calls (
    event_id          uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    request_id        text        NOT NULL,
    api_key_id        uuid,
    team_id           uuid,
    user_id           uuid,
    model             text        NOT NULL,
    provider          text,
    upstream_model    text,
    outcome           text        NOT NULL,
    status            integer     NOT NULL,
    streamed          boolean     NOT NULL,
    attempts          integer     NOT NULL,
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    total_tokens      bigint      NOT NULL,
    cost_micros       bigint      NOT NULL,
    latency_ms        bigint      NOT NULL,
    occurred_at       timestamptz NOT NULL
);
CREATE INDEX chat_calls_by_org ON read.chat_calls (org_id, occurred_at);
