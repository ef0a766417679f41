-- Webhook deliveries the dispatcher gave up on (final HTTP answer or attempts exhausted).
-- No foreign key to bindu_tasks: a dead letter outlives the purge of its task. The body is
-- the exact JSON that was posted; tokens are never stored (replays read the current config).

CREATE TABLE bindu_push_dead_letters (
    agent        TEXT        NOT NULL,
    id           TEXT        NOT NULL,
    task_id      TEXT        NOT NULL,
    event_id     TEXT        NOT NULL,
    seq          BIGINT      NOT NULL,
    config_id    TEXT        NOT NULL,
    url          TEXT        NOT NULL,
    body         TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL,
    last_error   TEXT        NOT NULL,
    seq_no       BIGSERIAL   NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at  TIMESTAMPTZ,
    PRIMARY KEY (agent, id)
);
CREATE INDEX bindu_push_dead_letters_order ON bindu_push_dead_letters (agent, seq_no DESC);
