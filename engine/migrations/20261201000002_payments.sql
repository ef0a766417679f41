-- Payments of paid tasks (x402), kept with the task they paid for: the verified payment,
-- the settlement attempts and their answer, and (while a settlement's outcome is unknown)
-- the result owed to the payer. Namespaced by agent like the dead letters; no foreign key to
-- bindu_tasks: a payment record outlives the purge of its task (it is the merchant's
-- accounting). `state`: verified, settling, settled, refused, orphaned, unpaid.

CREATE TABLE bindu_payments (
    agent       TEXT COLLATE "C" NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    -- authorization.nonce, 0x + 64 lower-case hex digits
    nonce       TEXT COLLATE "C" NOT NULL,
    state       TEXT        NOT NULL,
    -- the PaymentCommand: payload, requirements, payer, nonce, validBefore
    payment     JSONB       NOT NULL,
    -- the facilitator's last settlement answer
    receipt     JSONB,
    attempts    INTEGER     NOT NULL DEFAULT 0,
    error       TEXT,
    -- the run's result kept while an orphaned settlement is unresolved
    kept        JSONB,
    seq_no      BIGSERIAL   NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, task_id, nonce)
);
CREATE INDEX bindu_payments_order ON bindu_payments (agent, seq_no DESC);
-- The reconciliation job's scan: only the few payments whose outcome is unknown.
CREATE INDEX bindu_payments_orphaned ON bindu_payments (agent, updated_at) WHERE state = 'orphaned';
