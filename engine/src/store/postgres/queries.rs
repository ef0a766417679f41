//! The text of the statements the store runs on its hot paths, for tests that check their
//! plans (`EXPLAIN`) against a real database.

/// A task by id: `$1` agent, `$2` task id.
pub fn task_by_id() -> String {
    super::read::task_by_id()
}
/// A page of tasks as `tasks/list` reads it with a `historyLength` (the newest messages,
/// no artifacts): `$1` agent, `$2` cursor, `$3` limit, `$4` messages kept, then the owner
/// and/or context when filtered.
pub fn task_page(owner: bool, context: bool) -> String {
    super::read::task_page(
        super::read::TaskFilters {
            owner,
            context,
            ..Default::default()
        },
        super::read::HistorySlice::Newest,
        false,
    )
}
/// The number of tasks of a listing (A2A 1.0 `totalSize`): `$1` agent, then the owner
/// and/or context when filtered.
pub fn task_count(owner: bool, context: bool) -> String {
    super::read::task_count(super::read::TaskFilters {
        owner,
        context,
        ..Default::default()
    })
}
/// A page of contexts: `$1` agent, `$2` cursor, `$3` owner when filtered, then the limit.
pub fn context_page(owner: bool) -> String {
    super::read::context_page(owner)
}
pub use super::claims::CLAIM_MESSAGES;
pub use super::writer::{APPLY_UPDATES, CURRENT_STATES, LOCK_FOLLOWUPS};
