//! `tasks/get`, `tasks/cancel`, `tasks/resubscribe`.

use super::streams::{assert_stream_envelopes, kinds};
use super::*;

// ---- 11. tasks/get, tasks/cancel, tasks/resubscribe -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_are_not_found() {
    let srv = TestServer::echo().await;
    for method in ["tasks/get", "tasks/cancel"] {
        let code = srv.rpc_err(method, json!({"id": "no-such-task"})).await;
        assert_eq!(code, TASK_NOT_FOUND, "{method}");
    }
    // A streaming call's error is the stream's one event.
    let events = srv
        .open_stream(json!(1), "tasks/resubscribe", json!({"id": "no-such-task"}))
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(error_code(&events[0]), TASK_NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_cannot_be_canceled_or_resubscribed() {
    let srv = TestServer::echo().await;
    let task = srv.send(user_message("quick")).await;
    let tid = task_id(&task);
    assert_eq!(
        srv.rpc_err("tasks/cancel", json!({"id": tid})).await,
        TASK_NOT_CANCELABLE
    );
    let events = srv
        .open_stream(json!(1), "tasks/resubscribe", json!({"id": tid}))
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(error_code(&events[0]), UNSUPPORTED_OPERATION);
    assert_eq!(state(&srv.get_task(&tid).await), "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_task_interrupts_its_handler() {
    let observed = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flag = observed.clone();
    let h = handler(move |input: HandlerInput| {
        let flag = flag.clone();
        let started = started_tx.clone();
        async move {
            // The pool aborts the run after a grace period, so the observer lives in its own
            // task: it sees the token whether or not the handler future is polled again.
            let token = input.cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => flag.store(true, Ordering::SeqCst),
                    _ = tokio::time::sleep(TIMEOUT) => {}
                }
            });
            let _ = started.send(input.task_id.clone());
            tokio::time::sleep(Duration::from_millis(1000)).await;
            Ok(HandlerOutput::Text("finished anyway".into()))
        }
    });
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("long job")).await;
    let tid = task_id(&task);
    let started = within("the handler to start", started_rx.recv())
        .await
        .unwrap();
    assert_eq!(started, tid);

    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(canceled["id"], json!(tid));
    assert_eq!(state(&canceled), "canceled", "{canceled}");

    until("the handler to see the cancellation", || {
        observed.load(Ordering::SeqCst)
    })
    .await;

    // Past the point where the handler would have returned: still canceled, no artifact.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
    assert!(later.get("artifacts").is_none(), "{later}");
    assert_eq!(
        srv.rpc_err("tasks/cancel", json!({"id": tid})).await,
        TASK_NOT_CANCELABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_clean_up_when_canceled() {
    let cleaned = Arc::new(AtomicBool::new(false));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flag = cleaned.clone();
    let h = handler(move |input: HandlerInput| {
        let flag = flag.clone();
        let started = started_tx.clone();
        async move {
            let _ = started.send(input.task_id.clone());
            tokio::select! {
                // Inside the handler itself: the pool grants a grace period before aborting.
                _ = input.cancel.cancelled() => {
                    flag.store(true, Ordering::SeqCst);
                    Ok(HandlerOutput::Text("cleaned up".into()))
                }
                _ = tokio::time::sleep(TIMEOUT) => Ok(HandlerOutput::Text("too late".into())),
            }
        }
    });
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("cleanup")).await;
    let tid = task_id(&task);
    within("the handler to start", started_rx.recv())
        .await
        .unwrap();
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled", "{canceled}");
    until("the handler's cancel branch", || {
        cleaned.load(Ordering::SeqCst)
    })
    .await;
    // Its late result does not overwrite the cancellation.
    let later = srv.get_task(&tid).await;
    assert_eq!(state(&later), "canceled", "{later}");
    assert!(later.get("artifacts").is_none(), "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_an_input_required_task() {
    let h =
        handler(
            |_input: HandlerInput| async move { Ok(HandlerOutput::InputRequired("more?".into())) },
        );
    let srv = TestServer::with_handler(h).await;
    let task = srv.send(user_message("start")).await;
    assert_eq!(state(&task), "input-required");
    let tid = task_id(&task);
    let canceled = srv.rpc_ok("tasks/cancel", json!({"id": tid})).await;
    assert_eq!(state(&canceled), "canceled");
    let code = srv.follow_up_err(&tid, "more").await;
    assert_eq!(code, TASK_IMMUTABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_to_a_running_task_streams_the_rest() {
    let (gate, h) = Gate::new();
    let srv = TestServer::with_handler(h).await;
    let task = srv.send_nonblocking(user_message("watch me")).await;
    let tid = task_id(&task);
    assert_eq!(gate.started().await, tid);

    let id = json!("resub");
    let mut reader = srv
        .open_stream(id.clone(), "tasks/resubscribe", json!({"id": tid}))
        .await;
    let first = reader.next_event().await.unwrap();
    assert_eq!(first["id"], id);
    assert_eq!(first["result"]["kind"], "task", "{first}");
    assert_eq!(first["result"]["id"], json!(tid));
    // The snapshot is the task as stored (the run is recorded with its outcome).
    assert_eq!(state(&first["result"]), "submitted", "{first}");

    gate.release(1);
    let mut events = vec![first];
    events.extend(reader.read_all().await);
    assert_stream_envelopes(&events, &id);
    // The run's `working` is announced up to 5 ms after its handler started: before this
    // stream subscribed (not seen), or after (seen right after the snapshot).
    let mut got = kinds(&events);
    if got.get(1).map(String::as_str) == Some("status-update:working") {
        got.remove(1);
        events.remove(1);
    }
    assert_eq!(
        got,
        [
            "task:submitted",
            "artifact-update",
            "status-update:completed"
        ],
        "{events:#?}"
    );
    assert_eq!(first_text(&events[1]["result"]["artifact"]), "released");
}
