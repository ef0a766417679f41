//! Conformance: reading and housekeeping (listings, contexts, push configs, feedback,
//! counts, purge).

use bindu_schemas::{PushNotificationConfig, TaskState};

use super::*;

pub async fn list_tasks_pages_newest_first(store: &dyn TaskStore) {
    // An older task of another owner: it must not cause an empty trailing page.
    submit_new(store, Some("owner-b")).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit_new(store, Some("owner-a")).await.task.id);
    }
    submit_new(store, Some("owner-b")).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = store
            .list_tasks(
                Access::Owner(Some("owner-a")),
                ListQuery::first(2).after(cursor.clone()).into(),
            )
            .await
            .expect("list");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|t| t.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    ids.reverse();
    assert_eq!(
        seen, ids,
        "newest first, every task once, other owners hidden"
    );
    let exact = store
        .list_tasks(Access::Owner(Some("owner-a")), ListQuery::first(5).into())
        .await
        .expect("list");
    assert_eq!(exact.items.len(), 5);
    assert!(
        exact.next_cursor.is_none(),
        "no next page when nothing else matches"
    );
    assert!(matches!(
        store
            .list_tasks(
                Access::Owner(None),
                ListQuery::first(2).after(Some("garbage".into())).into()
            )
            .await,
        Err(StoreError::Invalid(m)) if m.contains("pageToken") && m.contains("\"garbage\"")
    ));
    // A huge token is quoted in part: the refusal stays small.
    match store
        .list_tasks(
            Access::Owner(None),
            ListQuery::first(2).after(Some("x".repeat(100_000))).into(),
        )
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.len() < 300, "{} bytes", m.len()),
        other => panic!("a huge cursor must be refused as invalid: {other:?}"),
    }
}

/// Completes a fresh task of `owner` with `replies` agent messages and one artifact of
/// `artifact_bytes` bytes of text.
async fn finished_task(
    store: &dyn TaskStore,
    owner: Option<&str>,
    replies: usize,
    artifact_bytes: usize,
) -> String {
    let s = submit_new(store, owner).await;
    let id = s.task.id;
    run_to(store, &id, TaskState::Working).await;
    let mut update = TaskUpdate::new(&id, Expect::State(TaskState::Working))
        .artifact(chunk("out", &"a".repeat(artifact_bytes), false, true))
        .status(TaskState::Completed, None);
    for i in 0..replies {
        update = update.history(Message::agent(
            uuid::Uuid::new_v4().to_string(),
            vec![Part::text(format!("reply {i}"))],
        ));
    }
    store.apply(vec![update]).await.remove(0).expect("complete");
    id
}

/// Every page of a listing under `shape`, walking the cursors (at most 100 pages).
pub async fn all_pages(
    store: &dyn TaskStore,
    owner: Option<&str>,
    limit: u32,
    shape: ListShape,
) -> Vec<Page<Task>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = store
            .list_tasks(
                Access::Owner(owner),
                TaskListing::from(ListQuery::first(limit).after(cursor.clone())).shaped(shape),
            )
            .await
            .expect("list");
        cursor = page.next_cursor.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
    }
    panic!("more than 100 pages");
}

/// A listing's shape is applied by the store: only the newest messages, artifacts only
/// when asked, and a size bound that ends a page early (with a cursor) but never cuts a
/// task or leaves one out.
pub async fn shaped_listings_trim_and_bound_pages(store: &dyn TaskStore) {
    const ARTIFACT: usize = 64 * 1024;
    let owner = Some("shaped");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(finished_task(store, owner, 3, ARTIFACT).await);
    }
    ids.reverse();
    let ids_of = |pages: &[Page<Task>]| -> Vec<String> {
        pages
            .iter()
            .flat_map(|p| p.items.iter().map(|t| t.id.clone()))
            .collect()
    };

    // The newest message only, no artifacts: one page, small.
    let trimmed = ListShape {
        history: Some(1),
        artifacts: false,
        max_bytes: Some(ARTIFACT),
    };
    let pages = all_pages(store, owner, 10, trimmed).await;
    assert_eq!(pages.len(), 1, "small tasks fit one page");
    assert_eq!(ids_of(&pages), ids);
    for t in &pages[0].items {
        let history = t.history.as_ref().expect("history");
        assert_eq!(history.len(), 1, "newest message only");
        assert_eq!(history[0].text(), "reply 2", "the newest message");
        assert!(t.artifacts.is_none(), "artifacts left out");
    }
    let none = ListShape {
        history: Some(0),
        ..trimmed
    };
    let pages = all_pages(store, owner, 10, none).await;
    assert!(pages[0].items.iter().all(|t| t.history.is_none()));

    // With artifacts, a page ends once the next task would pass the bound: two 64 KiB
    // tasks per 150 KiB page, every task whole and listed once.
    let bounded = ListShape {
        history: None,
        artifacts: true,
        max_bytes: Some(150 * 1024),
    };
    let pages = all_pages(store, owner, 10, bounded).await;
    assert_eq!(ids_of(&pages), ids, "every task once, newest first");
    assert_eq!(pages.len(), 3, "cut short by size, not by the limit");
    for page in &pages {
        assert_eq!(page.items.len(), 2);
        assert!(json_size(&page.items) <= 150 * 1024 + 1024);
        for t in &page.items {
            let artifact = &t.artifacts.as_ref().expect("artifacts")[0];
            let text = match &artifact.parts[0] {
                Part::Text(t) => t.text.len(),
                _ => 0,
            };
            assert_eq!(text, ARTIFACT, "a task is never cut");
            assert_eq!(t.history.as_ref().map(Vec::len), Some(4));
        }
    }
    // A task larger than the bound comes alone: pages still move on.
    let tiny = ListShape {
        max_bytes: Some(1024),
        ..bounded
    };
    let pages = all_pages(store, owner, 10, tiny).await;
    assert_eq!(ids_of(&pages), ids);
    assert!(pages.iter().all(|p| p.items.len() == 1));
}

pub async fn contexts_list_and_clear(store: &dyn TaskStore) {
    let (ctx, ids) = tasks_in_a_context(store, 3).await;
    let other = submit_new(store, None).await;
    let page = store
        .list_contexts(Access::Owner(None), ListQuery::first(10))
        .await
        .expect("contexts");
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        page.items[0].context_id, other.task.context_id,
        "newest first"
    );
    let summary = page
        .items
        .iter()
        .find(|c| c.context_id == ctx)
        .expect("context listed");
    assert_eq!(summary.task_count, 3);
    assert_eq!(summary.task_ids, ids);

    let by_ctx = store
        .list_tasks(
            Access::Owner(None),
            ListQuery::first(10).in_context(ctx.clone()).into(),
        )
        .await
        .expect("by context");
    assert_eq!(by_ctx.items.len(), 3);

    let deleted = store
        .clear_context(&ctx, Access::Owner(None))
        .await
        .expect("clear");
    assert_eq!(deleted.len(), 3);
    for id in &ids {
        assert!(matches!(
            store.get(id, Access::Internal).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(matches!(
        store.clear_context(&ctx, Access::Owner(None)).await,
        Err(StoreError::ContextNotFound(_))
    ));
    assert!(store.get(&other.task.id, Access::Internal).await.is_ok());
}

pub async fn push_configs(store: &dyn TaskStore) {
    let id = submit_new(store, None).await.task.id;
    let cfg = |cid: &str, url: &str| PushNotificationConfig {
        url: url.into(),
        id: Some(cid.into()),
        token: Some("secret".into()),
        authentication: None,
        a2a_version: None,
    };
    assert!(store
        .list_push_configs(&id, Access::Owner(None))
        .await
        .expect("list")
        .is_empty());
    store
        .set_push_config(&id, Access::Owner(None), cfg("a", "http://127.0.0.1:9/a"))
        .await
        .expect("set a");
    // A config made over A2A 1.0 records it (its webhook gets 1.0 payloads).
    let b = PushNotificationConfig {
        a2a_version: Some(PushNotificationConfig::V10.into()),
        ..cfg("b", "http://127.0.0.1:9/b")
    };
    store
        .set_push_config(&id, Access::Owner(None), b)
        .await
        .expect("set b");
    store
        .set_push_config(&id, Access::Owner(None), cfg("a", "http://127.0.0.1:9/a2"))
        .await
        .expect("replace a");
    let list = store
        .list_push_configs(&id, Access::Owner(None))
        .await
        .expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].url, "http://127.0.0.1:9/a2");
    assert!(!list[0].wants_v10());
    assert!(
        list[1].wants_v10(),
        "the version that made a config is kept: {list:?}"
    );
    assert!(store
        .delete_push_config(&id, Access::Owner(None), "a")
        .await
        .expect("delete"));
    assert!(!store
        .delete_push_config(&id, Access::Owner(None), "a")
        .await
        .expect("delete again"));
    assert_eq!(
        store
            .list_push_configs(&id, Access::Owner(None))
            .await
            .expect("list")
            .len(),
        1
    );
    for i in 0..MAX_PUSH_CONFIGS_PER_TASK {
        let r = store
            .set_push_config(
                &id,
                Access::Owner(None),
                cfg(&format!("n{i}"), "http://127.0.0.1:9/n"),
            )
            .await;
        if i + 1 < MAX_PUSH_CONFIGS_PER_TASK {
            r.expect("within the bound");
        } else {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "bounded per task");
        }
    }
    assert!(matches!(
        store
            .set_push_config(
                "missing",
                Access::Owner(None),
                cfg("x", "http://127.0.0.1:9/")
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn feedback(store: &dyn TaskStore) {
    let id = submit_new(store, None).await.task.id;
    store
        .add_feedback(
            &id,
            Access::Owner(None),
            Feedback {
                feedback: "great".into(),
                rating: Some(5),
                metadata: None,
                created_at: crate::time::now_rfc3339(),
            },
        )
        .await
        .expect("feedback");
    let all = store
        .feedback(&id, Access::Owner(None))
        .await
        .expect("read");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].rating, Some(5));
    assert!(matches!(
        store
            .add_feedback("missing", Access::Owner(None), all[0].clone())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn counts_by_state(store: &dyn TaskStore) {
    let a = submit_new(store, None).await.task.id;
    submit_new(store, None).await;
    run_to(store, &a, TaskState::Completed).await;
    let counts = store.count_by_state().await.expect("counts");
    let get = |s: TaskState| counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
    assert_eq!(get(TaskState::Submitted), 1);
    assert_eq!(get(TaskState::Completed), 1);
    assert_eq!(get(TaskState::Working), 0);
}

pub async fn purge_removes_only_terminal_tasks(store: &dyn TaskStore) {
    let (ctx, ids) = tasks_in_a_context(store, 3).await;
    run_to(store, &ids[0], TaskState::Completed).await;
    run_to(store, &ids[1], TaskState::Failed).await;
    run_to(store, &ids[2], TaskState::Working).await;
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(
        store.purge(hour, true).await.expect("dry run"),
        0,
        "nothing is an hour old"
    );
    let zero = std::time::Duration::ZERO;
    assert_eq!(store.purge(zero, true).await.expect("dry run"), 2);
    assert!(
        store.get(&ids[0], Access::Internal).await.is_ok(),
        "a dry run deletes nothing"
    );
    assert_eq!(store.purge(zero, false).await.expect("purge"), 2);
    for id in &ids[..2] {
        assert!(matches!(
            store.get(id, Access::Internal).await,
            Err(StoreError::NotFound(_))
        ));
    }
    let running = store
        .get(&ids[2], Access::Internal)
        .await
        .expect("non-terminal task kept");
    assert_eq!(running.task.status.state, TaskState::Working);
    let ctx_page = store
        .list_contexts(Access::Owner(None), ListQuery::first(10))
        .await
        .expect("contexts");
    let summary = ctx_page
        .items
        .iter()
        .find(|c| c.context_id == ctx)
        .expect("context kept: it still has a task");
    assert_eq!(summary.task_ids, vec![ids[2].clone()]);
}
