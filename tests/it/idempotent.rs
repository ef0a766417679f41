//! Idempotent sends (`STORAGE__DEDUPE_WINDOW`): a `message/send` or `message/stream` that
//! its caller sends again with the same `messageId` gets the first one's task (or its
//! stream), never a second task or a second run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::limits::{bearer, two_callers};
use crate::support::{self, handler, state, task_id, user_message, Gate, TestServer};

/// An echo agent that counts its runs.
async fn counting(settings: &[(&str, &str)]) -> (TestServer, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let h = handler(move |input: bindu::HandlerInput| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(bindu::HandlerOutput::Text(format!(
                "run of {}",
                input.task_id
            )))
        }
    });
    (TestServer::start(settings, h).await, runs)
}

async fn listed(srv: &TestServer) -> usize {
    srv.rpc_ok("tasks/list", json!({})).await["tasks"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_send_answers_with_the_first_task_and_runs_once() {
    let (srv, runs) = counting(&[]).await;
    let message = user_message("once");
    let first = srv.send(message.clone()).await;
    assert_eq!(state(&first), "completed");
    // Blocking, non-blocking: the same task, as it is now.
    let again = srv.send(message.clone()).await;
    assert_eq!(task_id(&again), task_id(&first));
    assert_eq!(again["artifacts"], first["artifacts"]);
    let again = srv.send_nonblocking(message.clone()).await;
    assert_eq!(task_id(&again), task_id(&first));
    assert_eq!(state(&again), "completed");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one run");
    assert_eq!(listed(&srv).await, 1, "one task");
    // A new messageId is a new task.
    let other = srv.send(user_message("once")).await;
    assert_ne!(task_id(&other), task_id(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_stream_replays_the_first_tasks_stream() {
    let (srv, runs) = counting(&[]).await;
    let message = user_message("stream me");
    let first = srv.stream_message(json!(1), message.clone()).await;
    let last = first.last().unwrap();
    assert_eq!(last["result"]["final"], true, "{first:?}");
    let again = srv.stream_message(json!(2), message.clone()).await;
    assert_eq!(
        again[0]["result"]["id"], first[0]["result"]["id"],
        "the same task: {again:?}"
    );
    assert_eq!(again[0]["id"], 2, "the resend's own request id");
    assert_eq!(
        state(&again.last().unwrap()["result"]),
        "completed",
        "{again:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A blocking send of the same message: the same task too.
    assert_eq!(
        json!(task_id(&srv.send(message).await)),
        first[0]["result"]["id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_racing_the_first_waits_for_the_same_run() {
    let (gate, h) = Gate::new();
    let srv = Arc::new(TestServer::start(&[], h).await);
    let message = user_message("slow");
    let first = srv.send_nonblocking(message.clone()).await;
    let id = task_id(&first);
    assert_eq!(gate.started().await, id);
    // A blocking resend while the run is going: it waits for that run, not a new one.
    let resend = {
        let srv = srv.clone();
        let message = message.clone();
        tokio::spawn(async move { srv.send(message).await })
    };
    let streamed = {
        let srv = srv.clone();
        let message = message.clone();
        tokio::spawn(async move { srv.stream_message(json!(3), message).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    gate.release(1);
    let done = support::within("the resend's answer", resend)
        .await
        .unwrap();
    assert_eq!(task_id(&done), id);
    assert_eq!(state(&done), "completed");
    let events = support::within("the resent stream", streamed)
        .await
        .unwrap();
    assert_eq!(events[0]["result"]["id"], json!(id));
    assert_eq!(
        state(&events.last().unwrap()["result"]),
        "completed",
        "{events:?}"
    );
    assert_eq!(listed(&srv).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_resent_continues_the_task_once() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    // Asks for input on the first turn, completes on the next.
    let h = handler(move |input: bindu::HandlerInput| {
        let counter = counter.clone();
        async move {
            let turn = counter.fetch_add(1, Ordering::SeqCst);
            let _ = input;
            if turn == 0 {
                Ok(bindu::HandlerOutput::InputRequired("which city?".into()))
            } else {
                Ok(bindu::HandlerOutput::Text("done".into()))
            }
        }
    });
    let srv = TestServer::start(&[], h).await;
    let first = srv.send(user_message("weather")).await;
    assert_eq!(state(&first), "input-required");
    let follow = support::user_message_with("Paris", json!({"taskId": task_id(&first)}));
    let done = srv.send(follow.clone()).await;
    assert_eq!(state(&done), "completed");
    let again = srv.send(follow).await;
    assert_eq!(task_id(&again), task_id(&first));
    assert_eq!(state(&again), "completed");
    assert_eq!(asked.load(Ordering::SeqCst), 2, "two turns, not three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_with_one_message_id_get_two_tasks() {
    let (srv, _hydra) = two_callers(&[], Arc::new(bindu::EchoHandler::default())).await;
    let message = user_message("mine");
    let mut ids = Vec::new();
    for token in ["noisy", "quiet"] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                          "params": {"message": message.clone()}});
        let (k, v) = bearer(token);
        let (status, resp) = srv.raw_post_with(&[(k, &v)], &body.to_string()).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(state(&resp["result"]), "completed", "{resp}");
        ids.push(task_id(&resp["result"]));
    }
    assert_ne!(ids[0], ids[1], "each caller's message is its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_that_cannot_be_keys_are_refused_as_before() {
    let srv = TestServer::echo().await;
    for bad in [String::new(), "x".repeat(100_000)] {
        let message = support::user_message_with("hi", json!({"messageId": bad}));
        let code = srv
            .rpc_err("message/send", json!({"message": message}))
            .await;
        assert_eq!(code, -32602);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_a_resend_is_a_new_task() {
    let (srv, runs) = counting(&[("storage.dedupe_window", "0")]).await;
    let message = user_message("twice");
    let a = srv.send(message.clone()).await;
    let b = srv.send(message).await;
    assert_ne!(task_id(&a), task_id(&b));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
