//! Conformance: filtered listings and their counts ([`TaskStore::count_tasks`], A2A 1.0
//! `ListTasks`'s `totalSize`).

use bindu_schemas::TaskState;

use super::*;

/// A task of `owner` in context `ctx`.
async fn submit_in(store: &dyn TaskStore, owner: &str, ctx: &str) -> String {
    let req = SubmitRequest::new(uuid::Uuid::new_v4().to_string(), user_message("x"))
        .owned_by(Some(owner))
        .in_context(ctx);
    store.submit(req).await.expect("submit").task.id
}

async fn count(store: &dyn TaskStore, owner: &str, query: &ListQuery, filter: &TaskFilter) -> u64 {
    store
        .count_tasks(
            Access::Owner(Some(owner)),
            &TaskListing::from(query.clone()).filtered(filter.clone()),
        )
        .await
        .expect("count")
}

/// Every page of a filtered listing, walking the cursors (at most 50 pages), each checked
/// against the count: the count never changes from page to page, and every page but the
/// last is full.
async fn walk(
    store: &dyn TaskStore,
    owner: &str,
    query: ListQuery,
    filter: &TaskFilter,
) -> Vec<Task> {
    let total = count(store, owner, &query, filter).await;
    let mut listed = Vec::new();
    let mut cursor = None;
    for _ in 0..50 {
        let page_query = query.clone().after(cursor.clone());
        let page = store
            .list_tasks(
                Access::Owner(Some(owner)),
                TaskListing::from(page_query.clone()).filtered(filter.clone()),
            )
            .await
            .expect("list");
        assert_eq!(
            count(store, owner, &page_query, filter).await,
            total,
            "the count is the listing's, whatever page is asked for"
        );
        assert!(page.items.iter().all(|t| filter.keeps(t)), "{filter:?}");
        cursor = page.next_cursor;
        if cursor.is_some() {
            assert_eq!(
                page.items.len(),
                query.limit as usize,
                "a page before the last is full"
            );
        }
        listed.extend(page.items);
        if cursor.is_none() {
            assert_eq!(
                listed.len() as u64,
                total,
                "the pages hold the count {filter:?}"
            );
            return listed;
        }
    }
    panic!("more than 50 pages");
}

pub async fn counts_are_the_filtered_listings_totals(store: &dyn TaskStore) {
    let (ctx_a, ctx_b) = (
        format!("ctx-{}", uuid::Uuid::new_v4()),
        format!("ctx-{}", uuid::Uuid::new_v4()),
    );
    let ctx_other = format!("ctx-{}", uuid::Uuid::new_v4());
    // owner-a: five tasks in ctx_a (two working, one completed), two in ctx_b; the other
    // owner's tasks, interleaved, must never be counted.
    let mut in_a = Vec::new();
    for i in 0..5 {
        in_a.push(submit_in(store, "owner-a", &ctx_a).await);
        submit_in(store, "owner-z", &ctx_other).await;
        if i < 2 {
            run_to(store, &in_a[i], TaskState::Working).await;
        }
    }
    run_to(store, &in_a[4], TaskState::Completed).await;
    for _ in 0..2 {
        submit_in(store, "owner-a", &ctx_b).await;
    }
    let other_working = submit_in(store, "owner-z", &ctx_other).await;
    run_to(store, &other_working, TaskState::Working).await;

    let all = ListQuery::first(2);
    let working = TaskFilter {
        state: Some(TaskState::Working),
        ..TaskFilter::ALL
    };
    let submitted = TaskFilter {
        state: Some(TaskState::Submitted),
        ..TaskFilter::ALL
    };
    assert_eq!(count(store, "owner-a", &all, &TaskFilter::ALL).await, 7);
    assert_eq!(
        walk(store, "owner-a", all.clone(), &TaskFilter::ALL)
            .await
            .len(),
        7
    );
    let in_ctx = ListQuery::first(2).in_context(ctx_a.clone());
    assert_eq!(count(store, "owner-a", &in_ctx, &TaskFilter::ALL).await, 5);
    assert_eq!(
        walk(store, "owner-a", in_ctx.clone(), &TaskFilter::ALL)
            .await
            .len(),
        5
    );
    // Filtered by state: full pages, and the count is theirs.
    let mut ids: Vec<String> = walk(store, "owner-a", all.clone(), &working)
        .await
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    let mut expected = in_a[..2].to_vec();
    expected.sort();
    assert_eq!(ids, expected, "owner-a's working tasks, not owner-z's");
    assert_eq!(count(store, "owner-a", &all, &submitted).await, 4);
    walk(store, "owner-a", ListQuery::first(3), &submitted).await;
    assert_eq!(count(store, "owner-a", &in_ctx, &submitted).await, 2);
    walk(
        store,
        "owner-a",
        ListQuery::first(1).in_context(ctx_a.clone()),
        &submitted,
    )
    .await;
    // Another owner's context answers nothing, counted or listed.
    let theirs = ListQuery::first(2).in_context(ctx_other.clone());
    assert_eq!(count(store, "owner-a", &theirs, &TaskFilter::ALL).await, 0);
    assert!(walk(store, "owner-a", theirs, &TaskFilter::ALL)
        .await
        .is_empty());
    assert_eq!(count(store, "owner-z", &all, &TaskFilter::ALL).await, 6);
    assert_eq!(count(store, "owner-z", &all, &working).await, 1);
    assert_eq!(count(store, "nobody", &all, &TaskFilter::ALL).await, 0);
    assert_eq!(
        store
            .count_tasks(Access::Internal, &all.clone().into())
            .await
            .expect("count"),
        13,
        "the engine counts every owner's tasks"
    );

    // By status time: the completed task's status is the newest of owner-a's.
    let completed_at = store
        .get(&in_a[4], Access::Internal)
        .await
        .expect("get")
        .task
        .status
        .timestamp
        .expect("a status time");
    let at = chrono::DateTime::parse_from_rfc3339(&completed_at)
        .expect("an RFC 3339 status time")
        .with_timezone(&chrono::Utc);
    let since = |after| TaskFilter {
        status_after: Some(after),
        ..TaskFilter::ALL
    };
    let later = since(at + chrono::Duration::days(1));
    assert_eq!(count(store, "owner-a", &all, &later).await, 0);
    assert!(walk(store, "owner-a", all.clone(), &later).await.is_empty());
    let long_ago = since(at - chrono::Duration::days(1));
    assert_eq!(count(store, "owner-a", &all, &long_ago).await, 7);
    walk(store, "owner-a", all.clone(), &long_ago).await;
    // At the completed status's own time (inclusive): it is kept, with whatever else changed
    // in the same instant or later.
    let from_then = walk(store, "owner-a", all.clone(), &since(at)).await;
    assert!(from_then.iter().any(|t| t.id == in_a[4]), "{from_then:?}");
    let both = TaskFilter {
        state: Some(TaskState::Completed),
        status_after: Some(at),
    };
    assert_eq!(count(store, "owner-a", &in_ctx, &both).await, 1);
    assert_eq!(walk(store, "owner-a", in_ctx, &both).await.len(), 1);
}
