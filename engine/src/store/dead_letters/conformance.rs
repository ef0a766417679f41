//! The behaviour every [`DeadLetterStore`] backend must show. Backends call [`run_all`] from
//! their tests with a factory for fresh, empty stores (enable the `testing` feature).

use std::future::Future;

use super::{DeadLetter, DeadLetterStore};
use crate::store::StoreError;

/// A dead letter with id `id`, given up after 3 attempts.
pub fn letter(id: &str) -> DeadLetter {
    DeadLetter {
        id: id.into(),
        task_id: "t".into(),
        event_id: "t:1".into(),
        seq: 1,
        config_id: "c".into(),
        url: "http://127.0.0.1:9/hook".into(),
        body: "{}".into(),
        attempts: 3,
        last_error: "HTTP 500".into(),
        created_at: String::new(),
        replayed_at: None,
        retrying: false,
    }
}

pub async fn run_all<S, F, Fut>(make: F)
where
    S: DeadLetterStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    letters_are_kept_once_and_listed_newest_first(&make().await).await;
    replays_are_recorded(&make().await).await;
    parked_letters_come_back_oldest_first_until_finished(&make().await).await;
}

async fn ids(store: &dyn DeadLetterStore, limit: u32, pending_only: bool) -> Vec<String> {
    store
        .list(limit, pending_only)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// A second letter with the same id (a redelivered event given up again) is ignored; the
/// store stamps `created_at`; lists are newest first and limited.
pub async fn letters_are_kept_once_and_listed_newest_first(store: &dyn DeadLetterStore) {
    for id in ["a", "b", "c"] {
        store.add(letter(id)).await.expect("add");
    }
    let mut again = letter("a");
    again.last_error = "HTTP 410".into();
    store.add(again).await.expect("a duplicate add succeeds");
    assert_eq!(ids(store, 10, false).await, ["c", "b", "a"]);
    assert_eq!(ids(store, 2, false).await, ["c", "b"], "limited");
    let a = store.get("a").await.expect("get").expect("a is kept");
    assert_eq!(a.last_error, "HTTP 500", "the first letter stays");
    assert_eq!(
        (a.body.as_str(), a.attempts, a.seq),
        ("{}", 3, 1),
        "kept as given"
    );
    assert!(!a.created_at.is_empty(), "the store stamps created_at");
    assert_eq!(a.replayed_at, None);
    assert_eq!(store.get("zz").await.expect("get"), None);
    assert_eq!(store.pending().await.expect("pending"), 3);
}

/// A failed replay adds its attempts and error; a successful one marks the letter replayed,
/// which leaves the pending list and count. An unknown id is `NotFound`.
pub async fn replays_are_recorded(store: &dyn DeadLetterStore) {
    for id in ["a", "b"] {
        store.add(letter(id)).await.expect("add");
    }
    store
        .record_replay("b", Err((2, "HTTP 503".into())))
        .await
        .expect("a failed replay");
    let b = store.get("b").await.expect("get").expect("b");
    assert_eq!((b.attempts, b.last_error.as_str()), (5, "HTTP 503"));
    assert_eq!(b.replayed_at, None);
    store
        .record_replay("b", Ok(()))
        .await
        .expect("a successful replay");
    let b = store.get("b").await.expect("get").expect("b");
    assert!(b.replayed_at.is_some(), "replayed_at is set");
    assert_eq!(store.pending().await.expect("pending"), 1);
    assert_eq!(ids(store, 10, true).await, ["a"]);
    assert_eq!(ids(store, 10, false).await, ["b", "a"]);
    assert!(matches!(
        store.record_replay("zz", Ok(())).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Letters the dispatcher parked come back oldest first, without the ones given up, until
/// their retries end: delivered (replayed), given up (the attempts in all and the last error
/// replace the stored ones), or taken over by a replay.
pub async fn parked_letters_come_back_oldest_first_until_finished(store: &dyn DeadLetterStore) {
    for id in ["p1", "dead", "p2", "p3"] {
        let mut l = letter(id);
        l.retrying = id != "dead";
        l.attempts = 1;
        store.add(l).await.expect("add");
    }
    let retrying = |limit| async move {
        store
            .retrying(limit)
            .await
            .expect("retrying")
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(retrying(10).await, ["p1", "p2", "p3"]);
    assert_eq!(retrying(2).await, ["p1", "p2"], "limited, oldest first");
    let p1 = store.get("p1").await.expect("get").expect("p1");
    assert!(p1.retrying);

    store.finish_retry("p1", Ok(())).await.expect("delivered");
    let p1 = store.get("p1").await.expect("get").expect("p1");
    assert!(!p1.retrying && p1.replayed_at.is_some());
    store
        .finish_retry("p2", Err((8, "timeout".into())))
        .await
        .expect("given up");
    let p2 = store.get("p2").await.expect("get").expect("p2");
    assert_eq!((p2.attempts, p2.last_error.as_str()), (8, "timeout"));
    assert!(!p2.retrying && p2.replayed_at.is_none());
    store.record_replay("p3", Ok(())).await.expect("replayed");
    assert_eq!(retrying(10).await, Vec::<String>::new());
    assert_eq!(store.pending().await.expect("pending"), 2, "dead and p2");
    assert!(matches!(
        store.finish_retry("zz", Ok(())).await,
        Err(StoreError::NotFound(_))
    ));
}
