//! T2: the Postgres task store against a real server. Each test gets a fresh database,
//! created from `BINDU_TEST_DATABASE_URL` (or `DATABASE_URL`, or the local default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.
//!
//! Run with `cargo test -p bindu-engine --features t2-postgres --test it t2_postgres::`
//! (`scripts/test` does when Postgres is reachable).

use std::sync::Arc;
use std::time::Duration;

use bindu_engine::store::conformance::{self, run_to, submit_new, user_message};
use bindu_engine::store::postgres::queries;
use bindu_engine::store::postgres::test_db::{OutageProxy, TestDb};
use bindu_engine::store::*;
use bindu_schemas::{Part, TaskState};

/// A fresh agent of `suite` (its own namespace: isolation is part of what is tested) and
/// its store on `db`.
async fn fresh(db: &TestDb, suite: &str) -> (String, PostgresStore) {
    let agent = format!("did:bindu:test:{suite}:{}", uuid::Uuid::new_v4());
    let store = db.store(&agent).await;
    (agent, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let db = TestDb::new().await;
    // Each check gets its own agent namespace: isolation is part of what is tested.
    let db = &db;
    conformance::run_all(|| async move { fresh(db, "conformance").await.1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_conformance_suite() {
    let db = TestDb::new().await;
    let db = &db;
    dead_letters::conformance::run_all(|| async move {
        let (agent, store) = fresh(db, "dead-letters").await;
        PostgresDeadLetters::new(store.pool_handle().clone(), agent)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_conformance_suite() {
    let db = TestDb::new().await;
    let db = &db;
    payments::conformance::run_all(|| async move {
        let (agent, store) = fresh(db, "payments").await;
        PostgresPayments::new(store.pool_handle().clone(), agent)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    let db = TestDb::new().await;
    let mut handles = Vec::new();
    for i in 0..4 {
        let options = db.options(&format!("agent-{i}"));
        handles.push(tokio::spawn(async move {
            PostgresStore::connect(options).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await
            .expect("join")
            .expect("every concurrent start succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_processes_race_and_one_terminal_state_wins() {
    let db = TestDb::new().await;
    let agent = "did:bindu:test:race";
    // Two stores on one database: two writers with their own pools, like two processes.
    let a: Arc<dyn TaskStore> = Arc::new(db.store(agent).await);
    let b: Arc<dyn TaskStore> = Arc::new(db.store(agent).await);
    conformance::racing_writers_one_terminal_winner(&[a, b], 10).await;
}

fn chunk(text: &str, append: bool, last: bool) -> ArtifactChunk {
    conformance::chunk("a1", text, append, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let db = TestDb::new().await;
    let agent = "did:bindu:test:restart";
    let alice = Some("did:example:alice");
    let (id, before, ctx_before) = {
        let store = db.store(agent).await;
        let s = store
            .submit(
                SubmitRequest::new("restart-task", user_message("remember me"))
                    .owned_by(alice)
                    .in_context("restart-ctx")
                    .with_push_config(bindu_schemas::PushNotificationConfig {
                        url: "https://example.com/hook".into(),
                        id: Some("cfg-1".into()),
                        token: None,
                        authentication: None,
                        a2a_version: None,
                    }),
            )
            .await
            .expect("submit");
        run_to(&store, &s.task.id, TaskState::Working).await;
        for (text, append, last) in [("part one, ", false, false), ("part two", true, true)] {
            store
                .apply(vec![TaskUpdate::new(
                    &s.task.id,
                    Expect::State(TaskState::Working),
                )
                .artifact(chunk(text, append, last))])
                .await
                .remove(0)
                .expect("chunk");
        }
        let reply = bindu_schemas::Message::agent("agent-1".into(), vec![Part::text("done")]);
        store
            .apply(vec![TaskUpdate::new(
                &s.task.id,
                Expect::State(TaskState::Working),
            )
            .history(reply)
            .status(TaskState::Completed, None)])
            .await
            .remove(0)
            .expect("complete");
        store
            .add_feedback(
                &s.task.id,
                Access::Owner(alice),
                Feedback {
                    feedback: "good".into(),
                    rating: Some(4),
                    metadata: None,
                    created_at: String::new(),
                },
            )
            .await
            .expect("feedback");
        let before = store.get(&s.task.id, Access::Internal).await.expect("get");
        let ctx = first_contexts(&store, alice).await;
        (s.task.id, before, ctx.items)
    };
    // A new process: a new pool and writer on the same database.
    let store = db.store(agent).await;
    let after = store
        .get(&id, Access::Owner(alice))
        .await
        .expect("read back");
    assert_eq!(after.task, before.task);
    assert_eq!(after.version, before.version);
    let artifacts = after.task.artifacts.as_ref().expect("artifacts");
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0].parts.len(), 2, "chunks merged on read");
    assert_eq!(after.task.history.as_ref().map(Vec::len), Some(2));
    let configs = store
        .list_push_configs(&id, Access::Owner(alice))
        .await
        .expect("configs");
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].id.as_deref(), Some("cfg-1"));
    let fb = store
        .feedback(&id, Access::Owner(alice))
        .await
        .expect("feedback");
    assert_eq!(fb[0].rating, Some(4));
    let ctx = first_contexts(&store, alice).await;
    assert_eq!(ctx.items, ctx_before);
    // Still immutable after the restart.
    let mut msg = user_message("again");
    msg.task_id = Some(id.clone());
    let r = store
        .submit(SubmitRequest::new(id.clone(), msg).owned_by(alice))
        .await;
    assert!(matches!(r, Err(StoreError::Immutable { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sharing_a_database_never_see_each_other() {
    let db = TestDb::new().await;
    let x = db.store("did:bindu:test:x").await;
    let y = db.store("did:bindu:test:y").await;
    let submit =
        |text: &str| SubmitRequest::new("same-id", user_message(text)).in_context("same-ctx");
    x.submit(submit("for x")).await.expect("x");
    assert!(matches!(
        y.get("same-id", Access::Internal).await,
        Err(StoreError::NotFound(_))
    ));
    let all = ListQuery::first(100);
    assert!(y
        .list_tasks(Access::Internal, all.clone().into())
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(y
        .list_contexts(Access::Internal, all)
        .await
        .expect("list")
        .items
        .is_empty());
    // The same ids are free for the other agent.
    let sy = y.submit(submit("for y")).await.expect("y");
    assert!(sy.created);
    run_to(&y, "same-id", TaskState::Completed).await;
    let xt = x.get("same-id", Access::Internal).await.expect("x").task;
    assert_eq!(xt.status.state, TaskState::Submitted);
    assert_eq!(xt.history.expect("history")[0].text(), "for x");
    assert_eq!(y.purge(Duration::ZERO, false).await.expect("purge y"), 1);
    assert!(
        x.get("same-id", Access::Internal).await.is_ok(),
        "purging y leaves x alone"
    );
    let counts = x.count_by_state().await.expect("counts");
    assert_eq!(
        counts
            .iter()
            .find(|(s, _)| *s == TaskState::Submitted)
            .map(|(_, n)| *n),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writes_are_batched_and_all_durable() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:batch").await);
    let mut handles = Vec::new();
    for _ in 0..400 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let s = submit_new(&*store, None).await;
            run_to(&*store, &s.task.id, TaskState::Completed).await;
            s.task.id
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.expect("join"));
    }
    let fresh = db.store("did:bindu:test:batch").await;
    for id in &ids {
        let got = fresh.get(id, Access::Internal).await.expect("durable");
        assert_eq!(got.task.status.state, TaskState::Completed);
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let mut options = PostgresOptions::new("postgres://bindu:hunter2@127.0.0.1:1/bindu", "agent");
    options.timeout = Duration::from_secs(2);
    let err = match PostgresStore::connect(options).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on port 1"),
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password never appears: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_clear_errors_then_recovers() {
    let db = TestDb::new().await;
    let proxy = OutageProxy::start(&db.url).await;
    let proxied = proxy.url.clone();
    let mut options = PostgresOptions::new(proxied, "did:bindu:test:outage");
    options.timeout = Duration::from_secs(2);
    let store = Arc::new(
        PostgresStore::connect(options)
            .await
            .expect("connect through the proxy"),
    );
    let before = submit_new(&*store, None).await.task.id;

    proxy.go_down();
    // Reads, submits and transitions fail with Unavailable, bounded by the timeout.
    let bounded = Duration::from_secs(15);
    let r = tokio::time::timeout(bounded, store.get(&before, Access::Internal))
        .await
        .expect("no hang");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let r = tokio::time::timeout(
        bounded,
        store.submit(SubmitRequest::new("during-outage", user_message("x"))),
    )
    .await
    .expect("no hang");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(matches!(
        store.ready().await,
        Err(StoreError::Unavailable(_))
    ));

    // A write started during the outage is retried and lands once the database is back.
    let attempts_before = proxy.refused();
    let writer = {
        let store = store.clone();
        let id = before.clone();
        tokio::spawn(async move {
            store
                .apply(vec![TaskUpdate::new(
                    &id,
                    Expect::State(TaskState::Submitted),
                )
                .status(TaskState::Working, None)])
                .await
                .remove(0)
        })
    };
    // The write really was tried during the outage: its connection attempts were refused
    // (twice: its first try and a retry), and it is still waiting, not answered.
    proxy.refuses_more_than(attempts_before + 1).await;
    assert!(!writer.is_finished(), "the write gave up during the outage");
    proxy.come_back();
    let applied = tokio::time::timeout(bounded, writer)
        .await
        .expect("no hang")
        .expect("join");
    assert_eq!(
        applied.expect("retried until the database came back").state,
        TaskState::Working
    );

    // Everything works again, and nothing accepted before the outage was lost.
    store.ready().await.expect("ready again");
    let got = store
        .get(&before, Access::Internal)
        .await
        .expect("read after recovery");
    assert_eq!(got.task.status.state, TaskState::Working);
    assert!(matches!(
        store.get("during-outage", Access::Internal).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_reads_use_indexes() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:plans").await);
    let mut handles = Vec::new();
    for i in 0..1500 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let owner = if i % 3 == 0 {
                "did:example:a"
            } else {
                "did:example:b"
            };
            submit_new(&*store, Some(owner)).await
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
    let pool = store.pool_handle();
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    let agent: i32 =
        sqlx::query_scalar("SELECT id FROM bindu_agents WHERE name = 'did:bindu:test:plans'")
            .fetch_one(pool)
            .await
            .expect("agent id");
    // The store's own statements (their text as it runs them), prepared on one connection
    // and explained with this agent's values.
    let mut conn = pool.acquire().await.expect("connection");
    let mut plans = Vec::new();
    for (name, sql, args) in [
        (
            "page_by_owner",
            queries::task_page(true, false),
            format!("({agent}, 9223372036854775807, 51, 2, 'did:example:a')"),
        ),
        (
            "task_by_id",
            queries::task_by_id(),
            format!("({agent}, 'x')"),
        ),
        (
            "contexts_by_owner",
            queries::context_page(true),
            format!("({agent}, 9223372036854775807, 'did:example:a', 51)"),
        ),
    ] {
        let plan = explain(&mut conn, name, &sql, &args).await;
        plans.push(format!("{name}:\n{plan}"));
    }
    for plan in plans {
        assert!(
            !plan.contains("Seq Scan"),
            "expected an index scan:\n{plan}"
        );
        assert!(plan.contains("Index"), "expected an index scan:\n{plan}");
    }
}

/// A2A 1.0 `ListTasks`'s `totalSize` is one `count(*)` with the listing's conditions: among
/// many callers' tasks it reads one caller's through the owner index (or one context's
/// through the context index), never every task of the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_counts_use_the_owner_and_context_indexes() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:counts").await);
    let mut handles = Vec::new();
    for i in 0..1600 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("did:example:caller-{}", i % 40);
            submit_new(&*store, Some(&owner)).await
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
    let counted = store
        .count_tasks(
            Access::Owner(Some("did:example:caller-7")),
            &ListQuery::first(10).into(),
        )
        .await
        .expect("count");
    assert_eq!(counted, 40);
    let pool = store.pool_handle();
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    let agent: i32 =
        sqlx::query_scalar("SELECT id FROM bindu_agents WHERE name = 'did:bindu:test:counts'")
            .fetch_one(pool)
            .await
            .expect("agent id");
    let mut conn = pool.acquire().await.expect("connection");
    for (name, sql, args, index) in [
        (
            "count_by_owner",
            queries::task_count(true, false),
            format!("({agent}, 'did:example:caller-7')"),
            "bindu_tasks_owner_order",
        ),
        (
            "count_by_context",
            queries::task_count(true, true),
            format!("({agent}, 'did:example:caller-7', 'ctx')"),
            "bindu_tasks_context_order",
        ),
    ] {
        let plan = explain(&mut conn, name, &sql, &args).await;
        assert!(
            !plan.contains("Seq Scan"),
            "{name}: expected an index scan:\n{plan}"
        );
        assert!(plan.contains(index), "{name}: expected {index}:\n{plan}");
    }
}

/// A table that grew from empty faster than autovacuum analyzes it (at most once a minute)
/// keeps the statistics of an almost empty table, and generic plans cached by long-lived
/// connections then scan every task of the agent for each lookup by id: each write grew
/// slower as the table grew. The store's writer refreshes the statistics when its inserts
/// double, and no secondary index leads with `agent_id` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_lookups_use_the_primary_key_while_the_table_grows() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:young").await);
    let pool = store.pool_handle();
    let mut conn = pool.acquire().await.expect("connection");
    for table in ["bindu_tasks", "bindu_contexts"] {
        sqlx::query(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .execute(&mut *conn)
        .await
        .expect("no autovacuum: only the store's own statistics refresh counts");
    }
    for round in 0..6 {
        let mut handles = Vec::new();
        for _ in 0..500 {
            let store = store.clone();
            handles.push(tokio::spawn(async move { submit_new(&*store, None).await }));
        }
        for h in handles {
            h.await.expect("join");
        }
        let _ = round;
    }
    // The refresh runs beside the writer: wait (bounded) until the statistics saw most rows.
    let mut fresh = false;
    for _ in 0..100 {
        let tuples: f32 =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'bindu_tasks'")
                .fetch_one(&mut *conn)
                .await
                .expect("reltuples");
        if tuples >= 2000.0 {
            fresh = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        fresh,
        "the writer refreshes the statistics as the table grows"
    );
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .expect("generic plans");
    // The store's own statements, as it runs them.
    let ids = "ARRAY['b','c']::text[]";
    let jsons = |v: &str| format!("ARRAY['{v}','{v}']::jsonb[]");
    for (name, sql, args) in [
        ("get", queries::task_by_id(), "(1, 'b')".to_string()),
        (
            "lock",
            queries::LOCK_FOLLOWUPS.to_string(),
            format!("(1, {ids})"),
        ),
        (
            "transition",
            queries::APPLY_UPDATES.to_string(),
            format!(
                "(1, {ids}, {ids}, ARRAY[1,1]::int4[], ARRAY[1,1]::int2[], {}, \
                 ARRAY[1,1]::int8[], {}, {}, {})",
                jsons("{}"),
                jsons("[]"),
                jsons("[]"),
                jsons("null")
            ),
        ),
        (
            "current",
            queries::CURRENT_STATES.to_string(),
            format!("(1, {ids})"),
        ),
        (
            "ctx",
            "SELECT 1 FROM bindu_contexts x WHERE agent_id = $1 AND id = $2".to_string(),
            "(1, 'b')".to_string(),
        ),
    ] {
        let plan = explain(&mut conn, name, &sql, &args).await;
        assert!(
            plan.contains("_pkey"),
            "{name}: expected the primary key:\n{plan}"
        );
        assert!(
            !plan.contains("Seq Scan"),
            "{name}: no scan of the table:\n{plan}"
        );
    }
}

/// A value Postgres cannot hold (a NUL character in JSONB) in one operation of a batch
/// fails that operation only: the writer retries the rest of the batch one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_operation_never_fails_the_rest_of_its_batch() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("did:bindu:test:poison").await);
    let mut handles = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let text = if i == 25 { "bad \u{0} text" } else { "fine" };
            let r = store
                .submit(SubmitRequest::new(
                    format!("poison-{i}"),
                    user_message(text),
                ))
                .await;
            (i, r)
        }));
    }
    let mut ok = 0;
    for h in handles {
        let (i, r) = h.await.expect("join");
        if i == 25 {
            match r {
                Err(StoreError::Invalid(msg)) => assert!(msg.contains("cannot hold"), "{msg}"),
                other => panic!("the bad submit must be refused as invalid, got {other:?}"),
            }
        } else {
            r.unwrap_or_else(|e| panic!("submit {i} failed because of another: {e}"));
            ok += 1;
        }
    }
    assert_eq!(ok, 49);
    // The same for transitions: a bad result fails alone.
    let updates: Vec<TaskUpdate> = (0..10)
        .map(|i| {
            let text = if i == 3 { "bad \u{0}" } else { "result" };
            TaskUpdate::new(format!("poison-{i}"), Expect::Active)
                .history(user_message(text))
                .status(TaskState::Failed, None)
        })
        .collect();
    let results = store.apply(updates).await;
    for (i, r) in results.into_iter().enumerate() {
        if i == 3 {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        } else {
            assert_eq!(r.expect("innocent update").state, TaskState::Failed);
        }
    }
    let t = store.get("poison-3", Access::Internal).await.expect("read");
    assert_eq!(
        t.task.status.state,
        TaskState::Submitted,
        "the bad update changed nothing"
    );
}

/// The plan Postgres chooses for `sql` prepared as `name` and executed with `args`
/// (`EXPLAIN EXECUTE`, so a generic plan shows as a cached connection would use it).
async fn explain(conn: &mut sqlx::PgConnection, name: &str, sql: &str, args: &str) -> String {
    sqlx::query(&format!("PREPARE {name} AS {sql}"))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN EXECUTE {name}{args}"))
        .fetch_all(&mut *conn)
        .await
        .expect("explain");
    rows.into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first ten contexts of `owner`.
async fn first_contexts(
    store: &PostgresStore,
    owner: Option<&str>,
) -> Page<bindu_schemas::ContextSummary> {
    let query = ListQuery::first(10);
    store
        .list_contexts(Access::Owner(owner), query)
        .await
        .expect("ctx")
}

/// Two stores on one database (two ingress processes) take resends of one message at once:
/// one task, and every other submit, on either store, names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_racing_on_two_processes_make_one_task() {
    let db = TestDb::new().await;
    let agent = "did:bindu:test:dedupe";
    let a: Arc<dyn TaskStore> = Arc::new(db.store(agent).await);
    let b: Arc<dyn TaskStore> = Arc::new(db.store(agent).await);
    for round in 0..5 {
        let message_id = format!("resent-{round}");
        let mut joins = Vec::new();
        for i in 0..12 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let mut m = user_message("once");
            m.message_id = message_id.clone();
            let req = SubmitRequest::new(uuid::Uuid::now_v7().to_string(), m)
                .owned_by(Some("carol"))
                .deduplicated_for(Duration::from_secs(300));
            joins.push(tokio::spawn(async move { store.submit(req).await }));
        }
        let mut created = Vec::new();
        let mut duplicates = Vec::new();
        for j in joins {
            match j.await.unwrap() {
                Ok(s) => created.push(s.task.id),
                Err(StoreError::Duplicate { task_id }) => duplicates.push(task_id),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(created.len(), 1, "round {round}: {created:?}");
        assert!(
            duplicates.iter().all(|d| *d == created[0]),
            "{duplicates:?}"
        );
    }
    let listed = a
        .list_tasks(Access::Owner(Some("carol")), ListQuery::first(100).into())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 5, "one task per message");
}

/// Expired claims are deleted in bounded batches; live ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_claims_are_deleted_and_live_ones_kept() {
    let db = TestDb::new().await;
    let store = db.store("did:bindu:test:claims").await;
    let send = |id: String, window: Duration| {
        let mut m = user_message("x");
        m.message_id = id;
        SubmitRequest::new(uuid::Uuid::now_v7().to_string(), m).deduplicated_for(window)
    };
    for i in 0..30 {
        store
            .submit(send(format!("short-{i}"), Duration::from_millis(100)))
            .await
            .unwrap();
    }
    let live = store
        .submit(send("long".into(), Duration::from_secs(300)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.delete_expired_claims().await.unwrap(), 30);
    assert_eq!(store.delete_expired_claims().await.unwrap(), 0);
    match store
        .submit(send("long".into(), Duration::from_secs(300)))
        .await
    {
        Err(StoreError::Duplicate { task_id }) => assert_eq!(task_id, live.task.id),
        other => panic!("the live claim was kept: {other:?}"),
    }
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM bindu_message_claims")
        .fetch_one(store.pool_handle())
        .await
        .unwrap();
    assert_eq!(claims, 1);
}
