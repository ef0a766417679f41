-- Keep lookups on the primary key and task transitions HOT.
--
-- Every secondary index of bindu_tasks used to lead with `agent`. On a young table (few rows
-- in the statistics, generic plans cached by long-lived connections, foreign-key checks
-- included) the planner would pick such an index for `agent = $1 AND id = $2`, and then filter
-- every task of the agent: each lookup grew with the table. Secondary indexes now lead with
-- a column the lookups do not constrain, so only the primary key serves them.
--
-- The (agent, state, updated_at) index for retention also made every transition update four
-- indexes (state and updated_at change on each one). Retention now walks `created_at`, which
-- never changes, so transitions that touch no indexed column are HOT updates; fillfactor
-- leaves each page room for them.

DROP INDEX IF EXISTS bindu_tasks_state_updated;
CREATE INDEX IF NOT EXISTS bindu_tasks_created ON bindu_tasks (created_at);

DROP INDEX IF EXISTS bindu_tasks_owner_order;
CREATE INDEX IF NOT EXISTS bindu_tasks_owner_order ON bindu_tasks (owner, agent, seq_no DESC);
DROP INDEX IF EXISTS bindu_tasks_context_order;
CREATE INDEX IF NOT EXISTS bindu_tasks_context_order ON bindu_tasks (context_id, agent, seq_no DESC);
DROP INDEX IF EXISTS bindu_contexts_owner_order;
CREATE INDEX IF NOT EXISTS bindu_contexts_owner_order ON bindu_contexts (owner, agent, seq_no DESC);

ALTER TABLE bindu_tasks SET (fillfactor = 80, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE bindu_contexts SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE bindu_task_messages SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE bindu_task_artifacts SET (autovacuum_analyze_scale_factor = 0.02);
