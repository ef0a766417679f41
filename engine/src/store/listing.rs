//! What a listing asks for and gets back: the query and its page, the filter of A2A 1.0
//! `ListTasks`, and the shape (fields and size bound) each listed task takes; a task
//! listing ([`TaskListing`]) holds all three.

use bindu_schemas::{Task, TaskState};

use super::StoreError;

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub cursor: Option<String>,
    pub limit: u32,
    pub context_id: Option<String>,
}

impl ListQuery {
    /// The first page of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        ListQuery {
            limit,
            ..Default::default()
        }
    }

    /// The page after `cursor` (a previous page's `next_cursor`; `None`: the first page).
    pub fn after(self, cursor: Option<String>) -> Self {
        ListQuery { cursor, ..self }
    }

    /// Only the tasks of context `context_id`.
    pub fn in_context(self, context_id: impl Into<String>) -> Self {
        ListQuery {
            context_id: Some(context_id.into()),
            ..self
        }
    }
}

/// Which tasks a listing keeps beside its [`ListQuery`]'s context: A2A 1.0 `ListTasks`'s
/// `status` and `statusTimestampAfter`. Applied by the store where it reads, in the listing
/// and in its count ([`TaskStore::count_tasks`](super::TaskStore::count_tasks)) alike, so
/// pages are full and the count is their total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks whose status changed at or after this time (a task whose status has no
    /// readable time is not kept).
    pub status_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl TaskFilter {
    /// Every task.
    pub const ALL: TaskFilter = TaskFilter {
        state: None,
        status_after: None,
    };

    /// Whether `task` passes the filter.
    pub fn keeps(&self, task: &Task) -> bool {
        if self.state.is_some_and(|s| s != task.status.state) {
            return false;
        }
        let Some(after) = self.status_after else {
            return true;
        };
        task.status
            .timestamp
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|at| at >= after)
    }
}

/// What of each task a listing returns, and how large a page may grow. Backends apply it
/// where they read (Postgres: in the query), so a listing never builds whole tasks only to
/// trim them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    /// Keep the newest `n` messages of each history (`Some(0)`: none); `None`: all.
    pub history: Option<usize>,
    /// Include the tasks' artifacts.
    pub artifacts: bool,
    /// Approximate size (bytes of the tasks' JSON) past which a page ends early, with a
    /// cursor to the rest. A page always holds at least one task (a task is never cut),
    /// so one larger than this comes alone. `None`: no size bound.
    pub max_bytes: Option<usize>,
}

impl ListShape {
    /// Whole tasks, no size bound (the engine's own reads).
    pub const FULL: ListShape = ListShape {
        history: None,
        artifacts: true,
        max_bytes: None,
    };

    /// `task` as this shape returns it: only the kept messages and parts are cloned.
    pub fn apply(&self, task: &Task) -> Task {
        let history = task.history.as_ref().and_then(|h| match self.history {
            Some(0) => None,
            Some(n) => Some(h[h.len().saturating_sub(n)..].to_vec()),
            None => Some(h.clone()),
        });
        Task {
            id: task.id.clone(),
            context_id: task.context_id.clone(),
            status: task.status.clone(),
            kind: task.kind,
            history,
            artifacts: if self.artifacts {
                task.artifacts.clone()
            } else {
                None
            },
            metadata: task.metadata.clone(),
        }
    }
}

/// The size of `value` as JSON, without building the text.
pub fn json_size<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and the schema types always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Fills a page under a [`ListShape`]'s size bound: says whether `next` (of `size` bytes)
/// still fits after `items` items of `total` bytes, the page holding at most `limit`.
pub fn page_has_room(
    items: usize,
    total: usize,
    size: usize,
    limit: usize,
    shape: &ListShape,
) -> bool {
    if items >= limit {
        return false;
    }
    // The first task always goes in: a page that could hold none would never move on.
    items == 0
        || shape
            .max_bytes
            .is_none_or(|max| total.saturating_add(size) <= max)
}

/// The refusal of a page cursor this store did not issue (A2A 1.0 calls it `pageToken`). It
/// quotes at most 64 characters of what was sent, so a huge token makes no huge answer.
pub fn invalid_cursor(cursor: &str) -> StoreError {
    let shown: String = cursor.chars().take(64).collect();
    let more = if shown.len() < cursor.len() {
        "…"
    } else {
        ""
    };
    StoreError::Invalid(format!(
        "`cursor` (A2A 1.0: `pageToken`) {shown:?}{more} is not a cursor this server issued; send the previous page's `nextCursor` (1.0: `nextPageToken`), or none for the first page"
    ))
}

/// One task listing: the page ([`ListQuery`]), which tasks ([`TaskFilter`]) and what of
/// each ([`ListShape`]). From a bare query: every task the caller may see, whole.
#[derive(Debug, Clone)]
pub struct TaskListing {
    pub query: ListQuery,
    pub filter: TaskFilter,
    pub shape: ListShape,
}

impl TaskListing {
    /// Only the tasks `filter` keeps.
    pub fn filtered(self, filter: TaskFilter) -> Self {
        TaskListing { filter, ..self }
    }

    /// Each task as `shape` says.
    pub fn shaped(self, shape: ListShape) -> Self {
        TaskListing { shape, ..self }
    }
}

impl From<ListQuery> for TaskListing {
    fn from(query: ListQuery) -> Self {
        TaskListing {
            query,
            filter: TaskFilter::ALL,
            shape: ListShape::FULL,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_filter_keeps_a_state_and_status_times_from_its_own_on() {
        let mut task: Task = serde_json::from_value(serde_json::json!({
            "id": "t", "contextId": "c", "kind": "task",
            "status": {"state": "input-required", "timestamp": "2026-01-01T00:00:00.001Z"}
        }))
        .expect("a task");
        let after = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let working = TaskFilter {
            state: Some(TaskState::Working),
            ..TaskFilter::ALL
        };
        assert!(TaskFilter::ALL.keeps(&task));
        assert!(!working.keeps(&task), "input-required is not working");
        task.status.state = TaskState::Working;
        assert!(working.keeps(&task));
        let since = TaskFilter {
            status_after: Some(after),
            ..working
        };
        assert!(since.keeps(&task));
        task.status.timestamp = Some("2026-01-01T00:00:00Z".into());
        assert!(since.keeps(&task), "at the given time is kept");
        task.status.timestamp = Some("2026-01-01T01:59:59+02:00".into());
        assert!(!since.keeps(&task), "changed before the given time");
        for unreadable in [None, Some("yesterday".to_string())] {
            task.status.timestamp = unreadable;
            assert!(!since.keeps(&task), "no readable time: not kept");
        }
    }
}
