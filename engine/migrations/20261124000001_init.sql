-- bindu task store. Every row carries `agent` (the agent's identity), so many agents can
-- share one database; `owner` is the caller that created the task or context ('' when auth
-- is off). History, artifact chunks and push configs are append-only child rows: a long
-- conversation never rewrites what it already stored.

CREATE TABLE bindu_contexts (
    agent       TEXT        NOT NULL,
    id          TEXT        NOT NULL,
    owner       TEXT        NOT NULL DEFAULT '',
    seq_no      BIGSERIAL   NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, id)
);
CREATE INDEX bindu_contexts_owner_order ON bindu_contexts (agent, owner, seq_no DESC);

CREATE TABLE bindu_tasks (
    agent          TEXT        NOT NULL,
    id             TEXT        NOT NULL,
    context_id     TEXT        NOT NULL,
    owner          TEXT        NOT NULL DEFAULT '',
    state          TEXT        NOT NULL,
    status         JSONB       NOT NULL,
    -- sequence number of the task's last event
    version        BIGINT      NOT NULL,
    -- ordinal the next history message gets
    history_count  INTEGER     NOT NULL DEFAULT 0,
    metadata       JSONB,
    seq_no         BIGSERIAL   NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, id),
    FOREIGN KEY (agent, context_id) REFERENCES bindu_contexts (agent, id) ON DELETE CASCADE
);
CREATE INDEX bindu_tasks_owner_order ON bindu_tasks (agent, owner, seq_no DESC);
CREATE INDEX bindu_tasks_context_order ON bindu_tasks (agent, context_id, seq_no DESC);
CREATE INDEX bindu_tasks_state_updated ON bindu_tasks (agent, state, updated_at);

CREATE TABLE bindu_task_messages (
    agent    TEXT    NOT NULL,
    task_id  TEXT    NOT NULL,
    ordinal  INTEGER NOT NULL,
    message  JSONB   NOT NULL,
    PRIMARY KEY (agent, task_id, ordinal),
    FOREIGN KEY (agent, task_id) REFERENCES bindu_tasks (agent, id) ON DELETE CASCADE
);

CREATE TABLE bindu_task_artifacts (
    agent        TEXT    NOT NULL,
    task_id      TEXT    NOT NULL,
    -- the event sequence number of this chunk
    seq          BIGINT  NOT NULL,
    append       BOOLEAN NOT NULL,
    last_chunk   BOOLEAN NOT NULL,
    artifact     JSONB   NOT NULL,
    PRIMARY KEY (agent, task_id, seq),
    FOREIGN KEY (agent, task_id) REFERENCES bindu_tasks (agent, id) ON DELETE CASCADE
);

CREATE TABLE bindu_push_configs (
    agent      TEXT        NOT NULL,
    task_id    TEXT        NOT NULL,
    config_id  TEXT        NOT NULL,
    config     JSONB       NOT NULL,
    seq_no     BIGSERIAL   NOT NULL,
    PRIMARY KEY (agent, task_id, config_id),
    FOREIGN KEY (agent, task_id) REFERENCES bindu_tasks (agent, id) ON DELETE CASCADE
);

CREATE TABLE bindu_task_feedback (
    agent       TEXT        NOT NULL,
    task_id     TEXT        NOT NULL,
    id          BIGSERIAL   NOT NULL,
    feedback    TEXT        NOT NULL,
    rating      SMALLINT,
    metadata    JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, task_id, id),
    FOREIGN KEY (agent, task_id) REFERENCES bindu_tasks (agent, id) ON DELETE CASCADE
);
