//! Conformance: idempotent sends ([`SubmitRequest::dedupe`]). The first submit of an
//! (owner, `messageId`) claims it with the message; a later one within the window is
//! refused with [`StoreError::Duplicate`] naming the first's task, and records nothing.

use std::time::Duration;

use bindu_schemas::{Message, TaskState};

use super::*;

const WINDOW: Duration = Duration::from_secs(300);

/// A message with id `message_id` for a new task of `owner`, claimed for `window`.
fn send(owner: Option<&str>, message_id: &str, window: Duration) -> SubmitRequest {
    let mut m: Message = user_message("hello");
    m.message_id = message_id.to_string();
    SubmitRequest::new(uuid::Uuid::now_v7().to_string(), m)
        .owned_by(owner)
        .deduplicated_for(window)
}

/// A follow-up with id `message_id` for `task_id`.
fn follow(owner: Option<&str>, task_id: &str, message_id: &str) -> SubmitRequest {
    let mut m: Message = user_message("more");
    m.message_id = message_id.to_string();
    m.task_id = Some(task_id.to_string());
    SubmitRequest::new(task_id, m)
        .owned_by(owner)
        .deduplicated_for(WINDOW)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

pub async fn a_resent_message_gets_the_first_task_and_records_nothing(store: &dyn TaskStore) {
    let m = unique("m");
    let first = store
        .submit(send(Some("alice"), &m, WINDOW))
        .await
        .expect("the first send");
    let again = send(Some("alice"), &m, WINDOW);
    let second_id = again.task_id.clone();
    match store.submit(again).await {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, first.task.id),
        other => panic!("a resent message is a duplicate of the first: {other:?}"),
    }
    assert!(matches!(
        store.get(&second_id, Access::Internal).await,
        Err(StoreError::NotFound(_))
    ));
    let snap = store
        .get(&first.task.id, Access::Internal)
        .await
        .expect("the store answers");
    assert_eq!(snap.version, 1, "the first task was not touched");
    assert_eq!(snap.task.history.expect("a history").len(), 1);
}

pub async fn one_message_id_from_two_owners_makes_two_tasks(store: &dyn TaskStore) {
    let m = unique("m");
    let a = store
        .submit(send(Some("alice"), &m, WINDOW))
        .await
        .expect("the store answers");
    let b = store
        .submit(send(Some("bob"), &m, WINDOW))
        .await
        .expect("the store answers");
    let anonymous = store
        .submit(send(None, &m, WINDOW))
        .await
        .expect("the store answers");
    assert_ne!(a.task.id, b.task.id);
    assert_ne!(a.task.id, anonymous.task.id);
    assert!(a.created && b.created && anonymous.created);
}

pub async fn without_a_window_every_message_is_new(store: &dyn TaskStore) {
    let m = unique("m");
    let a = store
        .submit(send(Some("alice"), &m, Duration::ZERO))
        .await
        .expect("the store answers");
    let b = store
        .submit(send(Some("alice"), &m, Duration::ZERO))
        .await
        .expect("the store answers");
    assert_ne!(a.task.id, b.task.id);
}

pub async fn a_follow_up_that_reuses_a_message_id_is_the_same_rule(store: &dyn TaskStore) {
    let m1 = unique("m1");
    let first = store
        .submit(send(Some("alice"), &m1, WINDOW))
        .await
        .expect("the store answers");
    let id = first.task.id.clone();
    run_to(store, &id, TaskState::InputRequired).await;
    // A follow-up reusing the first message's id: the task it went to.
    match store.submit(follow(Some("alice"), &id, &m1)).await {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, id),
        other => panic!("{other:?}"),
    }
    let m2 = unique("m2");
    let continued = store
        .submit(follow(Some("alice"), &id, &m2))
        .await
        .expect("a new follow-up continues the task");
    assert_eq!(continued.task.status.state, TaskState::Submitted);
    // The same follow-up again: no second continuation.
    match store.submit(follow(Some("alice"), &id, &m2)).await {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, id),
        other => panic!("{other:?}"),
    }
    let snap = store
        .get(&id, Access::Internal)
        .await
        .expect("the store answers");
    assert_eq!(
        snap.task.history.expect("a history").len(),
        2,
        "the message was recorded once"
    );
}

pub async fn a_refused_message_claims_nothing(store: &dyn TaskStore) {
    let running = submit_new(store, Some("alice")).await;
    let m = unique("m");
    // Refused (the task is queued): the message id stays free.
    let r = store
        .submit(follow(Some("alice"), &running.task.id, &m))
        .await;
    assert!(matches!(r, Err(StoreError::Busy { .. })), "{r:?}");
    let next = store
        .submit(send(Some("alice"), &m, WINDOW))
        .await
        .expect("the id was not claimed by a refused message");
    assert_ne!(next.task.id, running.task.id);
}

pub async fn an_expired_claim_lets_the_message_through(store: &dyn TaskStore) {
    let m = unique("m");
    let window = Duration::from_millis(200);
    let first = store
        .submit(send(Some("alice"), &m, window))
        .await
        .expect("the store answers");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store
        .submit(send(Some("alice"), &m, window))
        .await
        .expect("past the window a message is new");
    assert_ne!(first.task.id, second.task.id);
    match store.submit(send(Some("alice"), &m, window)).await {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, second.task.id),
        other => panic!("the new claim holds: {other:?}"),
    }
}

/// A released claim (its message was recorded but never queued) lets the message make a
/// new task; releasing it for another task changes nothing.
pub async fn a_released_claim_lets_the_message_through(store: &dyn TaskStore) {
    let m = unique("m");
    let req = send(Some("alice"), &m, WINDOW);
    let key = req.dedupe_key().expect("a claimed message has a key");
    let first = store.submit(req).await.expect("the store answers");
    store
        .release_claim(key, "some-other-task")
        .await
        .expect("the store answers");
    match store.submit(send(Some("alice"), &m, WINDOW)).await {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, first.task.id),
        other => panic!("a claim of another task stays: {other:?}"),
    }
    store
        .release_claim(key, &first.task.id)
        .await
        .expect("the store answers");
    let second = store
        .submit(send(Some("alice"), &m, WINDOW))
        .await
        .expect("a released message is new");
    assert_ne!(first.task.id, second.task.id);
}

/// Many resends at once (a client retrying while its first request is in flight): one
/// task, every other submit names it.
pub async fn racing_resends_make_one_task(store: Arc<dyn TaskStore>) {
    let m = unique("m");
    let mut joins = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let req = send(Some("alice"), &m, WINDOW);
        joins.push(tokio::spawn(async move { store.submit(req).await }));
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    for j in joins {
        match j.await.expect("join") {
            Ok(s) => created.push(s.task.id),
            Err(StoreError::Duplicate { task_id }) => duplicates.push(task_id),
            Err(e) => panic!("a resend failed: {e}"),
        }
    }
    assert_eq!(created.len(), 1, "one task: {created:?}");
    assert_eq!(duplicates.len(), 15);
    assert!(
        duplicates.iter().all(|d| *d == created[0]),
        "{duplicates:?}"
    );
}
