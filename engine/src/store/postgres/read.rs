//! Read queries and row decoding. History and artifact chunks are in the task row; chunks
//! are merged here with the A2A rule.

use bindu_schemas::{Artifact, ContextSummary, Message, Metadata, Task, TaskKind, TaskStatus};
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

use super::db_error;
use crate::store::{merge_artifact, ArtifactChunk, StoreError, TaskSnapshot};

const TASK_COLUMNS: &str = "SELECT t.id, t.context_id, t.owner, t.status, t.version, t.metadata, \
    t.seq_no, t.history, t.chunks FROM bindu_tasks t";

pub(super) fn task_by_id() -> String {
    format!("{TASK_COLUMNS} WHERE t.agent_id = $1 AND t.id = $2")
}

/// Newest first, below cursor `$2`, at most `$3` rows, of the tasks `filters` keeps (its
/// parameters follow the statement's own; optional filters are separate statements so
/// each uses its index). With `history` the rows carry only the newest `$4` messages
/// (sliced in Postgres, so the rest never leaves it); without `artifacts` the chunks column
/// is not read at all.
pub(super) fn task_page(filters: TaskFilters, slice: HistorySlice, artifacts: bool) -> String {
    let history = match slice {
        HistorySlice::All => "t.history",
        HistorySlice::None => "'[]'::jsonb AS history",
        HistorySlice::Newest => {
            "jsonb_path_query_array(t.history, '$[last - $n + 1 to last]', \
             jsonb_build_object('n', $4::int)) AS history"
        }
    };
    let chunks = if artifacts {
        "t.chunks"
    } else {
        "'[]'::jsonb AS chunks"
    };
    let first = if slice == HistorySlice::Newest { 5 } else { 4 };
    format!(
        "SELECT t.id, t.context_id, t.owner, t.status, t.version, t.metadata, t.seq_no, \
         {history}, {chunks} FROM bindu_tasks t WHERE t.agent_id = $1 AND t.seq_no < $2{} \
         ORDER BY t.seq_no DESC LIMIT $3",
        filters.conditions(first)
    )
}

/// How many tasks every page of a listing holds together: the page's conditions without
/// its cursor. `$1` agent, then the filters' parameters.
pub(super) fn task_count(filters: TaskFilters) -> String {
    format!(
        "SELECT count(*) FROM bindu_tasks t WHERE t.agent_id = $1{}",
        filters.conditions(2)
    )
}

/// Which of a task listing's optional conditions a statement has; their parameters come
/// in this order after the statement's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TaskFilters {
    pub owner: bool,
    pub context: bool,
    pub state: bool,
    pub status_after: bool,
}

impl TaskFilters {
    /// The conditions, each ` AND …`, numbered from `$first`.
    fn conditions(self, first: usize) -> String {
        let mut sql = String::new();
        let mut n = first;
        let mut add = |on: bool, condition: &str| {
            if on {
                sql.push_str(&format!(
                    " AND {}",
                    condition.replace("$n", &format!("${n}"))
                ));
                n += 1;
            }
        };
        add(self.owner, "t.owner = $n");
        add(self.context, "t.context_id = $n");
        add(self.state, "t.state = $n");
        // Every stored status time is the engine's own RFC 3339 text; one without a time
        // is not kept (NULL), as in the memory store.
        add(
            self.status_after,
            "(t.status->>'timestamp')::timestamptz >= $n::timestamptz",
        );
        sql
    }
}

/// How much of each history a page query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HistorySlice {
    All,
    None,
    /// The newest `$4` messages.
    Newest,
}

const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

pub(super) fn context_page(owner: bool) -> String {
    let mut sql = format!(
        "SELECT c.id, c.seq_no, \
         to_char(c.created_at AT TIME ZONE 'UTC', {TS}) AS created_at, \
         to_char(c.updated_at AT TIME ZONE 'UTC', {TS}) AS updated_at, \
         COALESCE((SELECT jsonb_agg(t.id ORDER BY t.seq_no) FROM bindu_tasks t \
                   WHERE t.agent_id = c.agent_id AND t.context_id = c.id), '[]'::jsonb) AS task_ids \
         FROM bindu_contexts c WHERE c.agent_id = $1 AND c.seq_no < $2"
    );
    let n = if owner {
        sql.push_str(" AND c.owner = $3");
        4
    } else {
        3
    };
    sql.push_str(&format!(" ORDER BY c.seq_no DESC LIMIT ${n}"));
    sql
}

#[derive(Deserialize)]
struct ChunkRow {
    artifact: Artifact,
    append: bool,
    #[serde(rename = "lastChunk")]
    last_chunk: bool,
}

pub(super) fn snapshot(row: &PgRow) -> Result<TaskSnapshot, StoreError> {
    let id: String = row.try_get("id").map_err(db_error)?;
    let context_id: String = row.try_get("context_id").map_err(db_error)?;
    let owner: String = row.try_get("owner").map_err(db_error)?;
    let Json(status): Json<TaskStatus> = row.try_get("status").map_err(db_error)?;
    let version: i64 = row.try_get("version").map_err(db_error)?;
    let metadata: Option<Json<Metadata>> = row.try_get("metadata").map_err(db_error)?;
    let Json(history): Json<Vec<Message>> = row.try_get("history").map_err(db_error)?;
    let Json(chunks): Json<Vec<ChunkRow>> = row.try_get("chunks").map_err(db_error)?;
    let mut task = Task {
        id,
        context_id,
        status,
        kind: TaskKind::Task,
        history: Some(history),
        artifacts: None,
        metadata: metadata.map(|Json(m)| m),
    };
    for c in chunks {
        merge_artifact(
            &mut task,
            &ArtifactChunk {
                artifact: c.artifact,
                append: c.append,
                last_chunk: c.last_chunk,
            },
        );
    }
    Ok(TaskSnapshot {
        task,
        version: u64::try_from(version).unwrap_or(0),
        owner: (!owner.is_empty()).then_some(owner),
    })
}

pub(super) fn context_summary(row: &PgRow) -> Result<ContextSummary, StoreError> {
    let Json(task_ids): Json<Vec<String>> = row.try_get("task_ids").map_err(db_error)?;
    Ok(ContextSummary {
        context_id: row.try_get("id").map_err(db_error)?,
        task_count: task_ids.len() as u64,
        task_ids,
        created_at: row.try_get("created_at").map_err(db_error)?,
        updated_at: row.try_get("updated_at").map_err(db_error)?,
    })
}

pub(super) fn cursor_of(row: &PgRow) -> Result<String, StoreError> {
    let seq: i64 = row.try_get("seq_no").map_err(db_error)?;
    Ok(seq.to_string())
}

pub(super) fn parse_cursor(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => c
            .parse::<i64>()
            .map_err(|_| crate::store::invalid_cursor(c)),
    }
}
