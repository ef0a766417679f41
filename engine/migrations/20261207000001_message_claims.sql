-- Idempotent sends: the first message/send or message/stream of a caller's messageId claims
-- it, in the same transaction as the message's task write, for STORAGE__DEDUPE_WINDOW; a
-- retry within it (on any replica) finds the claim and answers with the first's task.
-- `key` is sha256 of the owner and the messageId (fixed size however long the id);
-- expired rows are deleted in bounded batches by each store process.

CREATE TABLE bindu_message_claims (
    agent_id    INTEGER     NOT NULL,
    key         BYTEA       NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, key)
);
CREATE INDEX bindu_message_claims_expiry ON bindu_message_claims (agent_id, expires_at);
