//! Payments in Postgres: table `bindu_payments`, namespaced by agent like the dead letters
//! (migrated by [`crate::store::PostgresStore::migrate`]).

use async_trait::async_trait;
use bindu_schemas::x402::PaymentCommand;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::{Finish, PaymentRecord, PaymentState, PaymentStore};
use crate::store::postgres::db_error;
use crate::store::StoreError;

/// Payments in Postgres (`bindu_payments`).
pub struct PostgresPayments {
    pool: PgPool,
    agent: String,
}

const COLUMNS: &str = "task_id, nonce, state, payment, receipt, attempts, error, kept, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created, \
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated";

/// [`COLUMNS`] of the table aliased `p`.
const QUALIFIED: &str = "p.task_id, p.nonce, p.state, p.payment, p.receipt, p.attempts, p.error, \
    p.kept, \
    to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created, \
    to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated";

fn record(row: &sqlx::postgres::PgRow) -> Result<PaymentRecord, StoreError> {
    let read = || -> Result<PaymentRecord, sqlx::Error> {
        let state: String = row.try_get("state")?;
        Ok(PaymentRecord {
            task_id: row.try_get("task_id")?,
            nonce: row.try_get("nonce")?,
            state: PaymentState::parse(&state).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown payment state {state:?}").into())
            })?,
            payment: row.try_get::<Json<PaymentCommand>, _>("payment")?.0,
            receipt: row.try_get::<Option<Json<_>>, _>("receipt")?.map(|j| j.0),
            attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
            error: row.try_get("error")?,
            kept: row.try_get::<Option<Json<_>>, _>("kept")?.map(|j| j.0),
            created_at: row.try_get("created")?,
            updated_at: row.try_get("updated")?,
        })
    };
    read().map_err(db_error)
}

impl PostgresPayments {
    /// Uses `pool` (migrated by [`crate::store::PostgresStore::migrate`]) for the rows
    /// of `agent`.
    pub fn new(pool: PgPool, agent: impl Into<String>) -> Self {
        PostgresPayments {
            pool,
            agent: agent.into(),
        }
    }

    async fn insert(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bindu_payments (agent, task_id, nonce, state, payment) \
             VALUES ($1, $2, $3, 'verified', $4) ON CONFLICT (agent, task_id, nonce) DO NOTHING",
        )
        .bind(&self.agent)
        .bind(task_id)
        .bind(&payment.nonce)
        .bind(Json(payment))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

#[async_trait]
impl PaymentStore for PostgresPayments {
    async fn record(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError> {
        self.insert(task_id, payment).await
    }

    async fn get(&self, task_id: &str, nonce: &str) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM bindu_payments WHERE agent = $1 AND task_id = $2 AND nonce = $3"
        );
        let row = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(task_id)
            .bind(nonce)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(record).transpose()
    }

    async fn for_task(&self, task_id: &str) -> Result<Vec<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM bindu_payments WHERE agent = $1 AND task_id = $2 \
             ORDER BY seq_no DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(task_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(record).collect()
    }

    async fn begin_settle(
        &self,
        task_id: &str,
        payment: &PaymentCommand,
    ) -> Result<PaymentRecord, StoreError> {
        self.insert(task_id, payment).await?;
        // One statement: the attempt is counted exactly when it is recorded; a settled (or
        // unpaid) payment is read back as it is.
        let sql = format!(
            "WITH begun AS ( \
               UPDATE bindu_payments SET state = 'settling', attempts = attempts + 1, \
                 updated_at = now() \
               WHERE agent = $1 AND task_id = $2 AND nonce = $3 \
                 AND state NOT IN ('settled', 'unpaid') \
               RETURNING {COLUMNS}) \
             SELECT * FROM begun \
             UNION ALL \
             SELECT {COLUMNS} FROM bindu_payments \
             WHERE agent = $1 AND task_id = $2 AND nonce = $3 \
               AND state IN ('settled', 'unpaid')"
        );
        let row = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(task_id)
            .bind(&payment.nonce)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => record(&row),
            None => Err(StoreError::NotFound(task_id.to_string())),
        }
    }

    async fn finish(&self, task_id: &str, nonce: &str, finish: Finish) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE bindu_payments SET state = $4, receipt = COALESCE($5, receipt), \
               error = $6, kept = $7, updated_at = now() \
             WHERE agent = $1 AND task_id = $2 AND nonce = $3",
        )
        .bind(&self.agent)
        .bind(task_id)
        .bind(nonce)
        .bind(finish.state.as_str())
        .bind(finish.receipt.map(Json))
        .bind(finish.error)
        .bind(finish.kept.map(Json))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(task_id.to_string()));
        }
        Ok(())
    }

    async fn claim_orphans(&self, limit: u32) -> Result<Vec<PaymentRecord>, StoreError> {
        // Oldest first: the order of the rows picked (an UPDATE returns rows in no order).
        let columns = QUALIFIED;
        let sql = format!(
            "WITH picked AS ( \
               SELECT task_id, nonce, updated_at AS since FROM bindu_payments \
               WHERE agent = $1 AND state = 'orphaned' \
               ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE bindu_payments p SET state = 'settling', attempts = attempts + 1, \
                 updated_at = now() \
               FROM picked WHERE p.agent = $1 AND p.task_id = picked.task_id \
                 AND p.nonce = picked.nonce \
               RETURNING picked.since, {columns}) \
             SELECT * FROM claimed ORDER BY since"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(record).collect()
    }

    async fn claim_stale(
        &self,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let columns = QUALIFIED;
        let sql = format!(
            "WITH picked AS ( \
               SELECT task_id, nonce, updated_at AS since FROM bindu_payments \
               WHERE agent = $1 AND state = 'settling' \
                 AND updated_at < now() - make_interval(secs => $3) \
               ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE bindu_payments p SET updated_at = now() \
               FROM picked WHERE p.agent = $1 AND p.task_id = picked.task_id \
                 AND p.nonce = picked.nonce \
               RETURNING picked.since, {columns}) \
             SELECT * FROM claimed ORDER BY since"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(i64::from(limit))
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(record).collect()
    }

    async fn list(
        &self,
        state: Option<PaymentState>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM bindu_payments WHERE agent = $1 \
             AND ($2::text IS NULL OR state = $2) ORDER BY seq_no DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.agent)
            .bind(state.map(PaymentState::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(record).collect()
    }
}
