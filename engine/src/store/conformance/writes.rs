//! Conformance: writing tasks (submits, transitions, runs, follow-ups, chunks).

use bindu_schemas::bus::EventBody;
use bindu_schemas::{Artifact, Message, Part, PushNotificationConfig, TaskState};

use super::*;

/// A worker's run: `working`, two streamed chunks and an interim status were announced
/// (4 sequence numbers after `submitted`), then the outcome records everything at once from
/// `submitted`. The chunks are stored without new events; the outcome's own events come
/// after the announced ones; the reply rides on the final event. A cancel recorded beside a
/// run skips [`RUN_SEQ_RESERVE`] numbers; without `after_run`, `submitted → completed` is
/// refused.
pub async fn a_run_is_recorded_once_with_its_outcome(store: &dyn TaskStore) {
    let s = submit_new(store, None).await;
    let id = s.task.id.clone();
    let plain = apply_one(
        store,
        TaskUpdate::new(&id, Expect::Active).status(TaskState::Completed, None),
    )
    .await;
    assert!(
        matches!(plain, Err(StoreError::IllegalTransition { .. })),
        "a run that announced nothing cannot complete from submitted: {plain:?}"
    );
    let chunk = |text: &str, append: bool, last: bool| ArtifactChunk {
        artifact: Artifact {
            artifact_id: "streamed".into(),
            parts: vec![Part::text(text)],
            name: None,
            description: None,
            metadata: None,
            extensions: None,
        },
        append,
        last_chunk: last,
    };
    let reply = Message::agent("reply".into(), vec![Part::text("Hello world")]);
    let applied = apply_one(
        store,
        TaskUpdate::new(&id, Expect::Active)
            .history(reply.clone())
            .status(TaskState::Completed, None)
            .after_run(
                4,
                vec![chunk("Hello ", false, false), chunk("world", true, true)],
            ),
    )
    .await
    .expect("the run's outcome");
    assert_eq!(applied.state, TaskState::Completed);
    assert_eq!(applied.version, s.version + 4 + 1);
    assert_eq!(
        applied.events.len(),
        1,
        "streamed chunks are not announced again"
    );
    let last = &applied.events[0];
    assert_eq!(last.seq, s.version + 5);
    assert!(last.is_final());
    assert_eq!(
        last.history,
        vec![reply],
        "the reply rides on the final event"
    );
    let snap = store.get(&id, Access::Internal).await.expect("read");
    assert_eq!(snap.version, s.version + 5);
    let artifacts = snap
        .task
        .artifacts
        .expect("the streamed artifact is stored");
    assert_eq!(artifacts.len(), 1);
    let texts: Vec<&str> = artifacts[0]
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["Hello ", "world"]);
    assert_eq!(snap.task.history.map(|h| h.len()), Some(2));

    // A cancel beside a run that may be announcing events numbers past them.
    let other = submit_new(store, None).await;
    let canceled = apply_one(
        store,
        TaskUpdate::new(&other.task.id, Expect::NotTerminal)
            .status(TaskState::Canceled, None)
            .beside_run(),
    )
    .await
    .expect("cancel");
    assert_eq!(canceled.version, other.version + RUN_SEQ_RESERVE + 1);
    assert_eq!(canceled.events[0].seq, canceled.version);
    // The run's late outcome cannot move it.
    let late = apply_one(
        store,
        TaskUpdate::new(&other.task.id, Expect::Active)
            .status(TaskState::Completed, None)
            .after_run(1, Vec::new()),
    )
    .await;
    assert!(
        matches!(
            late,
            Err(StoreError::Conflict {
                state: TaskState::Canceled,
                ..
            })
        ),
        "{late:?}"
    );
}

/// A follow-up whose inline push config is refused (the task already holds the most it may)
/// must leave the task as it was: moved back to `submitted` with no command queued, it would
/// never run.
pub async fn a_refused_inline_push_config_changes_nothing(store: &dyn TaskStore) {
    let s = submit_new(store, None).await;
    let id = s.task.id.clone();
    run_to(store, &id, TaskState::InputRequired).await;
    let before = store.get(&id, Access::Owner(None)).await.expect("get").task;
    for i in 0..MAX_PUSH_CONFIGS_PER_TASK {
        store
            .set_push_config(
                &id,
                Access::Owner(None),
                PushNotificationConfig {
                    url: format!("https://hooks.example.com/{i}"),
                    id: Some(format!("c{i}")),
                    token: None,
                    authentication: None,
                    a2a_version: None,
                },
            )
            .await
            .expect("a config below the limit");
    }
    let refused = store
        .submit(
            SubmitRequest::new(id.clone(), user_message("one more")).with_push_config(
                PushNotificationConfig {
                    url: "https://hooks.example.com/extra".into(),
                    id: Some("extra".into()),
                    token: None,
                    authentication: None,
                    a2a_version: None,
                },
            ),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let task = store.get(&id, Access::Owner(None)).await.expect("get").task;
    assert_eq!(task.status.state, TaskState::InputRequired);
    assert_eq!(
        task.history.map(|h| h.len()),
        before.history.map(|h| h.len()),
        "the message was not recorded"
    );
}

/// A recorded update says whether its task has push configs then (a webhook dispatcher
/// trusts it for a task's first events on the bus): none, one given with the message, one set
/// later.
pub async fn updates_say_whether_the_task_has_push_configs(store: &dyn TaskStore) {
    let config = |id: &str| PushNotificationConfig {
        url: "https://hooks.example.com/x".into(),
        id: Some(id.into()),
        token: None,
        authentication: None,
        a2a_version: None,
    };
    let plain = submit_new(store, None).await.task.id;
    assert!(!run_to(store, &plain, TaskState::Working).await.push_configs);
    let inline = store
        .submit(
            SubmitRequest::new("with-inline-config", user_message("hello"))
                .with_push_config(config("inline")),
        )
        .await
        .expect("submit")
        .task
        .id;
    assert!(
        run_to(store, &inline, TaskState::Working)
            .await
            .push_configs
    );
    let later = submit_new(store, None).await.task.id;
    store
        .set_push_config(&later, Access::Owner(None), config("later"))
        .await
        .expect("set");
    assert!(run_to(store, &later, TaskState::Working).await.push_configs);
}

pub async fn submit_creates_and_get_reads(store: &dyn TaskStore) {
    let s = submit_new(store, None).await;
    assert!(s.created);
    assert_eq!(s.version, 1);
    assert_eq!(s.event.seq, 1);
    assert_eq!(s.event.state(), Some(TaskState::Submitted));
    assert_eq!(s.task.status.state, TaskState::Submitted);
    assert!(
        !s.task.context_id.is_empty(),
        "server generates a context id"
    );
    let history = s.task.history.as_ref().expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].task_id.as_deref(), Some(s.task.id.as_str()));
    assert_eq!(
        history[0].context_id.as_deref(),
        Some(s.task.context_id.as_str())
    );

    let got = store
        .get(&s.task.id, Access::Owner(None))
        .await
        .expect("get");
    assert_eq!(got.task, s.task);
    assert_eq!(got.version, 1);
    assert!(matches!(
        store.get("missing", Access::Internal).await,
        Err(StoreError::NotFound(_))
    ));

    // Client-chosen ids are honoured and tasks in one context share it.
    let ctx = format!("ctx-{}", uuid::Uuid::new_v4());
    for id in ["client-task-1", "client-task-2"] {
        let s = store
            .submit(SubmitRequest::new(id, user_message("hi")).in_context(ctx.clone()))
            .await
            .expect("client ids");
        assert_eq!(s.task.id, id);
        assert_eq!(s.task.context_id, ctx);
    }
}

pub async fn owners_are_isolated(store: &dyn TaskStore) {
    let s = submit_new(store, Some("did:example:alice")).await;
    let id = &s.task.id;
    assert!(store
        .get(id, Access::Owner(Some("did:example:alice")))
        .await
        .is_ok());
    for other in [Access::Owner(Some("did:example:bob")), Access::Owner(None)] {
        assert!(matches!(
            store.get(id, other).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.list_push_configs(id, other).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.clear_context(&s.task.context_id, other).await,
            Err(StoreError::ContextNotFound(_))
        ));
        let page = store
            .list_tasks(other, ListQuery::first(100).into())
            .await
            .expect("list");
        assert!(page.items.iter().all(|t| t.id != *id));
    }
    // Bob cannot continue or join Alice's task or context.
    let mut msg = user_message("intrude");
    msg.task_id = Some(id.clone());
    let r = store
        .submit(SubmitRequest::new(id.clone(), msg).owned_by(Some("did:example:bob")))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))));
    let r = store
        .submit(
            SubmitRequest::new(uuid::Uuid::new_v4().to_string(), user_message("join"))
                .owned_by(Some("did:example:bob"))
                .in_context(s.task.context_id.clone()),
        )
        .await;
    assert!(matches!(r, Err(StoreError::ContextNotFound(_))));
}

pub async fn compare_and_set_and_terminal_immutability(store: &dyn TaskStore) {
    let s = submit_new(store, None).await;
    let id = s.task.id.clone();
    // submitted → completed is illegal.
    let r = store
        .apply(vec![
            TaskUpdate::new(&id, Expect::Any).status(TaskState::Completed, None)
        ])
        .await;
    assert!(matches!(r[0], Err(StoreError::IllegalTransition { .. })));
    // A wrong expectation is a conflict and changes nothing.
    let r = store
        .apply(vec![TaskUpdate::new(
            &id,
            Expect::State(TaskState::Working),
        )
        .status(TaskState::Completed, None)])
        .await;
    assert!(matches!(
        r[0],
        Err(StoreError::Conflict {
            state: TaskState::Submitted,
            ..
        })
    ));

    let applied = run_to(store, &id, TaskState::Completed).await;
    assert_eq!(applied.state, TaskState::Completed);
    assert_eq!(applied.version, 3);
    assert_eq!(applied.events.len(), 1);
    assert_eq!(applied.events[0].seq, 3);
    assert!(applied.events[0].is_final());

    // Terminal: no message, no status, no artifact can change it.
    let r = follow_up(store, &id, "again").await;
    assert!(matches!(
        r,
        Err(StoreError::Immutable {
            state: TaskState::Completed,
            ..
        })
    ));
    for update in [
        TaskUpdate::new(&id, Expect::Any).status(TaskState::Failed, None),
        TaskUpdate::new(&id, Expect::Any).artifact(chunk("a", "late", false, true)),
        TaskUpdate::new(&id, Expect::NotTerminal).status(TaskState::Canceled, None),
    ] {
        let r = store.apply(vec![update]).await;
        assert!(r[0].is_err(), "terminal task must not change: {:?}", r[0]);
    }
    let got = store.get(&id, Access::Internal).await.expect("get");
    assert_eq!(got.task.status.state, TaskState::Completed);
    assert!(got.task.artifacts.is_none());
    assert_eq!(got.version, 3);

    // A batch reports each update separately.
    let a = submit_new(store, None).await.task.id;
    let r = store
        .apply(vec![
            TaskUpdate::new(&a, Expect::State(TaskState::Submitted))
                .status(TaskState::Working, None),
            TaskUpdate::new("missing", Expect::Any).status(TaskState::Working, None),
            TaskUpdate::new(&a, Expect::State(TaskState::Working)).status(TaskState::Failed, None),
        ])
        .await;
    assert!(r[0].is_ok());
    assert!(matches!(r[1], Err(StoreError::NotFound(_))));
    assert_eq!(r[2].as_ref().map(|a| a.state).ok(), Some(TaskState::Failed));
}

pub async fn follow_ups_continue_interrupted_tasks(store: &dyn TaskStore) {
    let s = submit_new(store, None).await;
    let id = s.task.id.clone();
    // Queued task: a follow-up is refused as busy.
    let r = follow_up(store, &id, "too early").await;
    assert!(matches!(r, Err(StoreError::Busy { .. })));

    let prompt = Message::agent("q1".into(), vec![Part::text("which city?")]);
    apply_one(
        store,
        TaskUpdate::new(&id, Expect::State(TaskState::Submitted)).status(TaskState::Working, None),
    )
    .await
    .expect("working");
    let applied = apply_one(
        store,
        TaskUpdate::new(&id, Expect::State(TaskState::Working))
            .history(prompt.clone())
            .status(TaskState::InputRequired, Some(prompt)),
    )
    .await
    .expect("input-required");
    assert!(
        applied.events[0].is_final(),
        "interrupted states end a stream"
    );

    let mut msg = user_message("Paris");
    msg.task_id = Some(id.clone());
    // A mismatching context is refused.
    let r = store
        .submit(SubmitRequest::new(id.clone(), msg.clone()).in_context("another-context"))
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))));
    let again = store
        .submit(SubmitRequest::new(id.clone(), msg))
        .await
        .expect("follow-up");
    assert!(!again.created);
    assert_eq!(again.task.status.state, TaskState::Submitted);
    assert_eq!(again.version, applied.version + 1);
    assert_eq!(again.event.seq, again.version);
    let texts: Vec<String> = again
        .task
        .history
        .expect("history")
        .iter()
        .map(|m| m.text())
        .collect();
    assert_eq!(texts, ["hello", "which city?", "Paris"]);
}

pub async fn artifact_chunks_merge(store: &dyn TaskStore) {
    let id = submit_new(store, None).await.task.id;
    run_to(store, &id, TaskState::Working).await;
    let mut seqs = Vec::new();
    for (text, append, last) in [
        ("Hel", false, false),
        ("lo ", true, false),
        ("world", true, true),
    ] {
        let a = apply_one(
            store,
            TaskUpdate::new(&id, Expect::State(TaskState::Working))
                .artifact(chunk("art-1", text, append, last)),
        )
        .await
        .expect("chunk");
        assert_eq!(a.events.len(), 1);
        match &a.events[0].event {
            EventBody::Artifact(e) => {
                assert_eq!(e.append, Some(append));
                assert_eq!(e.last_chunk, Some(last));
            }
            other => panic!("expected an artifact event, got {other:?}"),
        }
        seqs.push(a.events[0].seq);
    }
    assert_eq!(seqs, [3, 4, 5]);
    // A second artifact, then a replacement (append:false) of it.
    for text in ["first", "replaced"] {
        apply_one(
            store,
            TaskUpdate::new(&id, Expect::State(TaskState::Working))
                .artifact(chunk("art-2", text, false, true)),
        )
        .await
        .expect("chunk");
    }
    let task = store.get(&id, Access::Internal).await.expect("get").task;
    let artifacts = task.artifacts.expect("artifacts");
    assert_eq!(artifacts.len(), 2);
    let text = |a: &Artifact| -> String {
        a.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.text.clone(),
                _ => String::new(),
            })
            .collect()
    };
    assert_eq!(text(&artifacts[0]), "Hello world");
    assert_eq!(artifacts[0].parts.len(), 3);
    assert_eq!(text(&artifacts[1]), "replaced");
}
