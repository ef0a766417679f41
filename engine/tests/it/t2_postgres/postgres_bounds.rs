//! T2: what one read costs the Postgres store, whatever the table holds: a size-bounded
//! `tasks/list` page reads about its bound, and the task counts metrics show are never
//! counted on the caller's path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::store::conformance::{chunk, run_to, submit_new};
use bindu_engine::store::postgres::test_db::TestDb;
use bindu_engine::store::*;
use bindu_schemas::{Artifact, Part, TaskState};

/// A store of `agent` on `db` that counts its tasks at most once per `interval`.
async fn counting(db: &TestDb, agent: &str, interval: Duration) -> PostgresStore {
    let mut options = db.options(agent);
    options.count_interval = interval;
    PostgresStore::connect(options).await.expect("connect")
}

/// How many tasks `counts` has `submitted`.
fn submitted(counts: &[(TaskState, u64)]) -> Option<u64> {
    counts
        .iter()
        .find(|(s, _)| *s == TaskState::Submitted)
        .map(|(_, n)| *n)
}

/// Completes a fresh task with one artifact of `bytes` bytes of text.
async fn large_task(store: &PostgresStore, bytes: usize) -> String {
    let id = submit_new(store, None).await.task.id;
    run_to(store, &id, TaskState::Working).await;
    let artifact = ArtifactChunk {
        artifact: Artifact {
            artifact_id: "out".into(),
            parts: vec![Part::text("x".repeat(bytes))],
            name: None,
            description: None,
            metadata: None,
            extensions: None,
        },
        append: false,
        last_chunk: true,
    };
    store
        .apply(vec![TaskUpdate::new(
            &id,
            Expect::State(TaskState::Working),
        )
        .artifact(artifact)
        .status(TaskState::Completed, None)])
        .await
        .remove(0)
        .expect("complete");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_bounded_page_reads_about_its_bound_not_its_limit() {
    const ARTIFACT: usize = 256 * 1024;
    let db = TestDb::new().await;
    let store = db.store("did:bindu:test:list-bounds").await;
    for _ in 0..60 {
        large_task(&store, ARTIFACT).await;
    }
    let query = ListQuery::first(50);
    let shape = ListShape {
        history: Some(1),
        artifacts: true,
        max_bytes: Some(1024 * 1024),
    };
    let before = store.list_rows_read();
    let page = store
        .list_tasks(
            Access::Owner(None),
            TaskListing::from(query.clone()).shaped(shape),
        )
        .await
        .expect("list");
    let read = store.list_rows_read() - before;
    // Three 256 KiB tasks fit 1 MiB; the page says where the rest begins.
    assert_eq!(page.items.len(), 3);
    assert!(page.next_cursor.is_some());
    assert!(json_size(&page.items) <= 1024 * 1024);
    assert!(read <= 8, "read {read} rows for a page of 3 (limit 50)");

    // Without artifacts the same page is small, and only the newest message is read.
    let small = store
        .list_tasks(
            Access::Owner(None),
            TaskListing::from(query).shaped(ListShape {
                artifacts: false,
                ..shape
            }),
        )
        .await
        .expect("list");
    assert_eq!(small.items.len(), 50);
    assert!(json_size(&small.items) < 64 * 1024);
    assert!(small
        .items
        .iter()
        .all(|t| t.artifacts.is_none() && t.history.as_ref().is_some_and(|h| h.len() == 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_counts_are_never_counted_on_the_callers_path() {
    let db = TestDb::new().await;
    let store = counting(&db, "did:bindu:test:counts", Duration::from_secs(3600)).await;
    submit_new(&store, None).await;
    // The first call starts a count in the background and has none to show yet.
    assert_eq!(store.task_counts().await, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(counts) = store.task_counts().await {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "the background count never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(submitted(&first), Some(1));
    // More tasks, many scrapes within the interval: no scrape counts again (a count would
    // see 101), so a scrape costs the same however many tasks are stored.
    for _ in 0..100 {
        submit_new(&store, None).await;
    }
    for _ in 0..20 {
        assert_eq!(store.task_counts().await, Some(first.clone()));
    }
    assert_eq!(
        submitted(&store.count_by_state().await.expect("count")),
        Some(101),
        "count_by_state still counts now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_counts_catch_up_after_the_interval() {
    let db = TestDb::new().await;
    let store = counting(
        &db,
        "did:bindu:test:counts-refresh",
        Duration::from_millis(200),
    )
    .await;
    for _ in 0..3 {
        submit_new(&store, None).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let submitted = store.task_counts().await.and_then(|c| submitted(&c));
        if submitted == Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts never caught up: {submitted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-turn task as a worker finishes it: the agent's reply and an artifact with the same
/// signed text, and the terminal status, in one update.
fn one_turn_outcome(task_id: &str) -> TaskUpdate {
    let signature =
        "2oBQPuoesNDp3Yqg5J81YX4VLuE52kNK5RrupWcmu78287vsS1StSWUZkRBJuffDKWDXaEQWtb1dLQT9a6SBaZLB";
    let mut artifact = chunk(&uuid::Uuid::new_v4().to_string(), "hello", false, true);
    if let Some(Part::Text(t)) = artifact.artifact.parts.first_mut() {
        let mut meta = bindu_schemas::Metadata::new();
        meta.insert("did.message.signature".into(), signature.into());
        t.metadata = Some(meta);
    }
    let reply = bindu_schemas::Message::agent(
        uuid::Uuid::new_v4().to_string(),
        artifact.artifact.parts.clone(),
    );
    TaskUpdate::new(task_id, Expect::Active)
        .history(reply)
        .artifact(artifact)
        .status(TaskState::Completed, None)
        // The run announced its `working` status only (workers never write it on its own).
        .after_run(1, Vec::new())
}

/// The page each task's row is on.
async fn pages(pool: &sqlx::PgPool, ids: &[String]) -> std::collections::HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT id, (ctid::text::point)[0]::bigint FROM bindu_tasks WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .expect("read pages")
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_turn_outcome_is_written_beside_its_task() {
    // Accepted in concurrent batches, as an ingress writes them, then finished in batches,
    // as workers do: each outcome must fit on its task's page (a HOT update, no index
    // touched). A row that moved page was rewritten in every index too.
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:hot").await);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut handles = Vec::new();
        for _ in 0..100 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                submit_new(&*store, None).await.task.id
            }));
        }
        for h in handles {
            ids.push(h.await.expect("join"));
        }
    }
    let before = pages(store.pool_handle(), &ids).await;
    for batch in ids.chunks(25) {
        for r in store
            .apply(batch.iter().map(|id| one_turn_outcome(id)).collect())
            .await
        {
            r.expect("complete");
        }
    }
    let after = pages(store.pool_handle(), &ids).await;
    let moved = ids
        .iter()
        .filter(|id| before.get(*id) != after.get(*id))
        .count();
    assert!(
        moved * 20 <= ids.len(),
        "{moved} of {} outcomes moved their task to another page",
        ids.len()
    );
}
