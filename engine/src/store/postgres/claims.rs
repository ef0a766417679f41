//! Idempotent sends in the batch writer ([`super::writer`]): the messages of a round that ask
//! for it ([`SubmitRequest::dedupe`]) are claimed in one set-based statement before their
//! task rows are written, in the same transaction; a message claimed already answers
//! [`StoreError::Duplicate`] with the first's task. After the round, the claims of messages
//! that failed are released, and later messages of a key claimed in the same round follow
//! their first's outcome.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use super::writer::{Input, Outcome};
use crate::store::*;

/// The submits of one round: claimed, recorded, then their claims settled.
pub(super) async fn submit_round(
    conn: &mut PgConnection,
    agent: i32,
    inputs: &[Input],
    submits: &[usize],
    results: &mut [Option<Result<Outcome, StoreError>>],
    now: &str,
) -> Result<(), sqlx::Error> {
    let reqs: Vec<(usize, &SubmitRequest)> = submits
        .iter()
        .filter_map(|i| match &inputs[*i] {
            Input::Submit(r) => Some((*i, r)),
            Input::Update(_) => None,
        })
        .collect();
    let claims = claim(conn, agent, reqs, results).await?;
    super::writer::record_round(conn, agent, &claims.go_on, results, now).await?;
    settle(conn, agent, inputs, &claims, results).await
}

/// Claims the messages of a round that ask for it ([`SubmitRequest::dedupe`]) in one
/// statement: a message claimed already (by another transaction, an earlier round of this
/// one, or earlier in this round) gets [`StoreError::Duplicate`] naming the first's task and
/// goes no further. Returns the submits that go on, and the keys claimed with their inputs.
pub const CLAIM_MESSAGES: &str = "INSERT INTO bindu_message_claims (agent_id, key, task_id, expires_at) \
     SELECT $1, x.key, x.task_id, now() + x.ms * interval '1 millisecond' \
     FROM unnest($2::bytea[], $3::text[], $4::int8[]) AS x(key, task_id, ms) \
     ON CONFLICT (agent_id, key) DO UPDATE SET task_id = EXCLUDED.task_id, expires_at = EXCLUDED.expires_at \
     WHERE bindu_message_claims.expires_at <= now() \
     RETURNING key";

/// What [`claim`] decided for a round's submits.
pub(super) struct Claims<'a> {
    /// The submits that go on (claimed, or not asking for a claim).
    pub(super) go_on: Vec<(usize, &'a SubmitRequest)>,
    /// Keys claimed now, with their input: released if that input then fails.
    mine: Vec<(usize, [u8; 32])>,
    /// Later submits of a key claimed earlier in this round (input, the first's input):
    /// they follow the first's outcome once it is known.
    followers: Vec<(usize, usize)>,
}

pub(super) async fn claim<'a>(
    conn: &mut PgConnection,
    agent: i32,
    reqs: Vec<(usize, &'a SubmitRequest)>,
    results: &mut [Option<Result<Outcome, StoreError>>],
) -> Result<Claims<'a>, sqlx::Error> {
    if reqs.iter().all(|(_, r)| r.dedupe.is_none()) {
        return Ok(Claims {
            go_on: reqs,
            mine: Vec::new(),
            followers: Vec::new(),
        });
    }
    // The first of each key in this round claims it; the others follow its outcome.
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    let mut followers: Vec<(usize, usize)> = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut task_ids: Vec<&str> = Vec::new();
    let mut windows: Vec<i64> = Vec::new();
    let mut asking: Vec<(usize, &'a SubmitRequest, [u8; 32])> = Vec::new();
    let mut go_on = Vec::with_capacity(reqs.len());
    for (i, r) in reqs {
        let (Some(key), Some(window)) = (r.dedupe_key(), r.dedupe) else {
            go_on.push((i, r));
            continue;
        };
        if let Some(f) = first.get(&key) {
            followers.push((i, *f));
            continue;
        }
        first.insert(key, i);
        keys.push(key.to_vec());
        task_ids.push(&r.task_id);
        windows.push(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        asking.push((i, r, key));
    }
    let claimed: std::collections::HashSet<Vec<u8>> = sqlx::query_scalar(CLAIM_MESSAGES)
        .bind(agent)
        .bind(&keys)
        .bind(&task_ids)
        .bind(&windows)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    // Claimed before: whose task it went to (a retry; the rare path).
    let taken: Vec<&Vec<u8>> = keys.iter().filter(|k| !claimed.contains(*k)).collect();
    let mut task_of: HashMap<Vec<u8>, String> = HashMap::new();
    if !taken.is_empty() {
        let rows = sqlx::query(
            "SELECT key, task_id FROM bindu_message_claims WHERE agent_id = $1 AND key = ANY($2)",
        )
        .bind(agent)
        .bind(&taken)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            task_of.insert(row.try_get("key")?, row.try_get("task_id")?);
        }
    }
    let mut mine = Vec::new();
    for (i, r, key) in asking {
        if claimed.contains(key.as_slice()) {
            mine.push((i, key));
            go_on.push((i, r));
            continue;
        }
        results[i] = Some(Err(match task_of.remove(key.as_slice()) {
            Some(task_id) => StoreError::Duplicate { task_id },
            // Claimed, then released by a failed write between the two statements.
            None => StoreError::Unavailable(
                "a message with this messageId was being recorded; retry".into(),
            ),
        }));
    }
    Ok(Claims {
        go_on,
        mine,
        followers,
    })
}

/// After a round: releases the claims of submits that failed, and gives each follower its
/// first's outcome as a duplicate.
pub(super) async fn settle(
    conn: &mut PgConnection,
    agent: i32,
    inputs: &[Input],
    claims: &Claims<'_>,
    results: &mut [Option<Result<Outcome, StoreError>>],
) -> Result<(), sqlx::Error> {
    let failed: Vec<Vec<u8>> = claims
        .mine
        .iter()
        .filter(|(i, _)| !matches!(results[*i], Some(Ok(_))))
        .map(|(_, key)| key.to_vec())
        .collect();
    if !failed.is_empty() {
        sqlx::query("DELETE FROM bindu_message_claims WHERE agent_id = $1 AND key = ANY($2)")
            .bind(agent)
            .bind(&failed)
            .execute(&mut *conn)
            .await?;
    }
    for (i, f) in &claims.followers {
        let outcome = match &results[*f] {
            Some(Ok(_)) => match &inputs[*f] {
                Input::Submit(r) => StoreError::Duplicate {
                    task_id: r.task_id.clone(),
                },
                Input::Update(_) => StoreError::Other("a claim of an update".into()),
            },
            Some(Err(StoreError::Duplicate { task_id })) => StoreError::Duplicate {
                task_id: task_id.clone(),
            },
            _ => StoreError::Unavailable(
                "a message with this messageId was being recorded and failed; retry".into(),
            ),
        };
        results[*i] = Some(Err(outcome));
    }
    Ok(())
}
