//! The behaviour every [`TaskStore`] backend must show. Backends call [`run_all`] from their
//! tests with a factory for fresh, empty stores (enable the `testing` feature).

use std::future::Future;
use std::sync::Arc;

use bindu_schemas::{Artifact, Message, Part, Role, TaskState};

use super::*;

mod counted;
mod dedupe;
mod races;
mod reads;
mod writes;

pub use counted::*;
pub use dedupe::*;
pub use races::*;
pub use reads::*;
pub use writes::*;

pub fn user_message(text: &str) -> Message {
    let mut m = Message::agent(uuid::Uuid::new_v4().to_string(), vec![Part::text(text)]);
    m.role = Role::User;
    m
}

/// Submits a fresh task with a server-chosen id.
pub async fn submit_new(store: &dyn TaskStore, owner: Option<&str>) -> Submitted {
    store
        .submit(
            SubmitRequest::new(uuid::Uuid::new_v4().to_string(), user_message("hello"))
                .owned_by(owner),
        )
        .await
        .expect("submit a new task")
}

/// Submits `n` tasks in a new context: the context and the tasks' ids, oldest first.
pub async fn tasks_in_a_context(store: &dyn TaskStore, n: usize) -> (String, Vec<String>) {
    let ctx = format!("ctx-{}", uuid::Uuid::new_v4());
    let mut ids = Vec::new();
    for _ in 0..n {
        let req = SubmitRequest::new(uuid::Uuid::new_v4().to_string(), user_message("x"));
        let s = store
            .submit(req.in_context(ctx.clone()))
            .await
            .expect("submit");
        ids.push(s.task.id);
    }
    (ctx, ids)
}

/// One update, applied alone.
pub async fn apply_one(store: &dyn TaskStore, update: TaskUpdate) -> Result<Applied, StoreError> {
    store.apply(vec![update]).await.remove(0)
}

/// A follow-up message for task `task_id`.
pub async fn follow_up(
    store: &dyn TaskStore,
    task_id: &str,
    text: &str,
) -> Result<Submitted, StoreError> {
    let mut msg = user_message(text);
    msg.task_id = Some(task_id.to_string());
    store.submit(SubmitRequest::new(task_id, msg)).await
}

/// Moves a submitted task through `working` to `state`.
pub async fn run_to(store: &dyn TaskStore, task_id: &str, state: TaskState) -> Applied {
    let working = apply_one(
        store,
        TaskUpdate::new(task_id, Expect::State(TaskState::Submitted))
            .status(TaskState::Working, None),
    )
    .await
    .expect("submitted → working");
    if state == TaskState::Working {
        return working;
    }
    apply_one(
        store,
        TaskUpdate::new(task_id, Expect::State(TaskState::Working)).status(state, None),
    )
    .await
    .expect("working → target")
}

/// A chunk of artifact `id` holding `text`.
pub fn chunk(id: &str, text: &str, append: bool, last: bool) -> ArtifactChunk {
    ArtifactChunk {
        artifact: Artifact {
            artifact_id: id.into(),
            parts: vec![Part::text(text)],
            name: Some("result".into()),
            description: None,
            metadata: None,
            extensions: None,
        },
        append,
        last_chunk: last,
    }
}

/// Runs every conformance check, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: TaskStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    submit_creates_and_get_reads(&make().await).await;
    owners_are_isolated(&make().await).await;
    compare_and_set_and_terminal_immutability(&make().await).await;
    follow_ups_continue_interrupted_tasks(&make().await).await;
    artifact_chunks_merge(&make().await).await;
    a_run_is_recorded_once_with_its_outcome(&make().await).await;
    list_tasks_pages_newest_first(&make().await).await;
    shaped_listings_trim_and_bound_pages(&make().await).await;
    counts_are_the_filtered_listings_totals(&make().await).await;
    contexts_list_and_clear(&make().await).await;
    push_configs(&make().await).await;
    updates_say_whether_the_task_has_push_configs(&make().await).await;
    a_refused_inline_push_config_changes_nothing(&make().await).await;
    feedback(&make().await).await;
    concurrent_terminal_writes_one_winner(Arc::new(make().await)).await;
    one_calls_updates_apply_in_order_under_load(Arc::new(make().await)).await;
    counts_by_state(&make().await).await;
    purge_removes_only_terminal_tasks(&make().await).await;
    a_resent_message_gets_the_first_task_and_records_nothing(&make().await).await;
    one_message_id_from_two_owners_makes_two_tasks(&make().await).await;
    without_a_window_every_message_is_new(&make().await).await;
    a_follow_up_that_reuses_a_message_id_is_the_same_rule(&make().await).await;
    a_refused_message_claims_nothing(&make().await).await;
    an_expired_claim_lets_the_message_through(&make().await).await;
    a_released_claim_lets_the_message_through(&make().await).await;
    racing_resends_make_one_task(Arc::new(make().await)).await;
}
