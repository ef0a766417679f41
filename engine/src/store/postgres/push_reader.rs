//! Push config lookups (the webhook dispatcher's), answered in batches: whatever is waiting,
//! in one query.

use std::time::Duration;

use bindu_schemas::PushNotificationConfig;
use sqlx::types::Json;
use sqlx::PgPool;

use super::*;
use crate::retry::RetryPolicy;

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
