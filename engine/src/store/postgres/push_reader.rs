//! Push config lookups (the webhook dispatcher's, for every event of every task), answered in
//! batches: whatever is waiting, in one query.

use std::time::Duration;

use bindu_schemas::PushNotificationConfig;
use sqlx::types::Json;
use sqlx::PgPool;

use super::*;
use crate::retry::RetryPolicy;

/// A push config lookup: the task id, and where its owner and configs go.
pub(super) type PushLookup = (
    String,
    oneshot::Sender<Result<(Option<String>, Vec<PushNotificationConfig>), StoreError>>,
);

impl PostgresStore {
    /// A task's push configs, looked up together with whatever other lookups are waiting.
    pub(super) async fn push_configs_of(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError> {
        // Coalesced with the lookups waiting at the same time (the webhook dispatcher asks
        // for every event of every task): one query for all of them.
        let (tx, rx) = oneshot::channel();
        self.push_reader
            .send((task_id.to_string(), tx))
            .await
            .map_err(|_| StoreError::Unavailable("the push config reader stopped".into()))?;
        let (owner, configs) = match tokio::time::timeout(self.options.timeout * 2, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable(
                    "the push config reader stopped".into(),
                ))
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "no answer from Postgres within {:?}",
                    self.options.timeout * 2
                )))
            }
        };
        if !access.permits(owner.as_deref()) {
            return Err(StoreError::NotFound(task_id.to_string()));
        }
        Ok(configs)
    }
}

/// Answers push config lookups in batches: whatever is waiting, in one query.
pub(super) async fn run(
    rx: async_channel::Receiver<PushLookup>,
    pool: PgPool,
    agent: i32,
    timeout: Duration,
) {
    let policy = RetryPolicy {
        deadline: timeout,
        ..RetryPolicy::default()
    };
    while let Ok(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        let mut ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let query = || {
            sqlx::query_as::<_, (String, String, Option<Json<PushNotificationConfig>>)>(
                "SELECT t.id, t.owner, p.config FROM bindu_tasks t \
                 LEFT JOIN bindu_push_configs p ON p.agent_id = t.agent_id AND p.task_id = t.id \
                 WHERE t.agent_id = $1 AND t.id = ANY($2) ORDER BY t.id, p.seq_no",
            )
            .bind(agent)
            .bind(&ids)
            .fetch_all(&pool)
        };
        let rows = match tokio::time::timeout(timeout, policy.run(query, is_transient)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                let e = db_error(e);
                for (_, tx) in batch {
                    let _ = tx.send(Err(match &e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        other => StoreError::Other(other.to_string().into()),
                    }));
                }
                continue;
            }
            Err(_) => {
                for (_, tx) in batch {
                    let _ = tx.send(Err(StoreError::Unavailable(format!(
                        "no answer from Postgres within {timeout:?}"
                    ))));
                }
                continue;
            }
        };
        let mut found: std::collections::HashMap<
            String,
            (Option<String>, Vec<PushNotificationConfig>),
        > = std::collections::HashMap::with_capacity(rows.len());
        for (id, owner, config) in rows {
            let entry = found
                .entry(id)
                .or_insert_with(|| ((!owner.is_empty()).then_some(owner), Vec::new()));
            if let Some(Json(c)) = config {
                entry.1.push(c);
            }
        }
        for (id, tx) in batch {
            let _ = tx.send(match found.get(&id) {
                Some((owner, configs)) => Ok((owner.clone(), configs.clone())),
                None => Err(StoreError::NotFound(id)),
            });
        }
    }
}
