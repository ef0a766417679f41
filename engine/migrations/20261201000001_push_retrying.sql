-- Webhook notifications the dispatcher parked and still retries by itself: recorded before
-- their task event is acknowledged on the bus, so a slow or failing receiver never holds the
-- bus, and given back (oldest first) to a dispatcher that restarts.

ALTER TABLE bindu_push_dead_letters ADD COLUMN retrying BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX bindu_push_dead_letters_retrying ON bindu_push_dead_letters (agent, seq_no)
    WHERE retrying;
