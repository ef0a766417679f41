//! The report counts only what it claims: tasks that fail are not "completed", a sampled
//! poll scales only the sampled completions, and in open loop the requests a stalled server
//! never let the generator send are in the latencies (no coordinated omission).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use bindu::{HandlerError, HandlerInput, HandlerOutput};
use support::{finished, load, load_n, server, server_with_handler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_every_task_reports_zero_completed() {
    let handler = bindu::handler_fn(|_: HandlerInput| async {
        Err::<HandlerOutput, _>(HandlerError::from("this agent fails every task"))
    });
    let s = server_with_handler(Arc::new(handler)).await;
    for scenario in ["send-blocking", "stream", "send"] {
        let r = load_n(&s.url, scenario, "40", "4", &[]).await;
        let table = r.table();
        // The requests were answered without error: the tasks failed.
        assert_eq!(r.errors.total, 0, "{scenario}: {table}");
        assert_eq!(r.accepted + r.accepted_after_window, 40, "{table}");
        assert_eq!(finished(&r), 0, "{scenario}: {table}");
        assert_eq!((r.completed_total, r.completed_per_sec), (0, 0.0));
        assert_eq!(r.states.failed, 40, "{scenario}: {table}");
        assert_eq!(r.states.completed, 0);
        assert_eq!(r.lost, 0);
        assert!(table.contains("failed 40"), "{table}");
        assert!(table.contains("40 did not complete"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["states"]["failed"], 40);
        assert_eq!(json["states"]["completed"], 0);
        assert_eq!(json["completed"], 0);
    }
    assert_eq!(s.tasks_in("failed").await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_polling_scales_only_the_polled_completions() {
    // A little handler time, so every non-blocking send is answered before its task ends
    // and is followed by the poller (one in two).
    let s = server(&[("worker.echo_delay_ms", "10")]).await;
    let r = load_n(
        &s.url,
        "mixed",
        "100",
        "4",
        &[
            "--mix",
            "send=2,send-blocking=1,stream=1",
            "--poll-every",
            "2",
        ],
    )
    .await;
    let table = r.table();
    assert_eq!(r.errors.total, 0, "{table}");
    assert_eq!(r.accepted + r.accepted_after_window, 100);
    assert_eq!(s.tasks_in("completed").await, 100);
    // 25 blocking sends and 25 streams seen once each, 25 of 50 non-blocking sends seen by
    // polls (× 2).
    assert_eq!(r.completed_by_poll + r.completed_by_poll_after_window, 25);
    assert_eq!(finished(&r), 75, "{table}");
    assert_eq!(r.not_sampled, 25);
    assert_eq!(r.completed_total, 100, "{table}");
    assert!(r.completed_per_sec * r.window_secs <= 100.5, "{table}");
    assert_eq!(r.estimated, vec!["completed_per_sec", "completed_total"]);
    assert!(table.contains("(estimated)"), "{table}");
    assert_eq!(r.lost, 0);

    // Nothing sampled: nothing estimated.
    let r = load_n(&s.url, "send-blocking", "20", "4", &["--poll-every", "2"]).await;
    assert_eq!(r.completed_total, 20);
    assert!(r.estimated.is_empty());
    assert!(!r.table().contains("(estimated)"));
}

/// A server that speaks just enough A2A for blocking sends and answers each after `stall`.
async fn stalled_server(stall: Duration) -> String {
    let app = Router::new().route(
        "/",
        post(move |Json(req): Json<serde_json::Value>| async move {
            tokio::time::sleep(stall).await;
            Json(serde_json::json!({
                "jsonrpc": "2.0",
                "id": req["id"],
                "result": {
                    "kind": "task",
                    "id": format!("task-{}", req["id"]),
                    "contextId": "c",
                    "status": {"state": "completed"}
                }
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_the_requests_a_stalled_server_kept_unsent() {
    let url = stalled_server(Duration::from_millis(500)).await;
    // 200 requests/s offered for 2 s on 2 connections to a server that answers each after
    // 0.5 s: about 10 are answered, the rest fall due and are never sent.
    let r = load(
        &url,
        &[
            "--scenario",
            "send-blocking",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--concurrency",
            "2",
            "--drain",
            "5s",
            "--timeout",
            "5s",
        ],
    )
    .await;
    let table = r.table();
    assert_eq!(r.errors.total, 0, "{table}");
    assert!(r.sent <= 20, "{table}");
    assert!(r.due_not_sent >= 300, "{table}");
    // Every request is in request → completed once: answered or never sent.
    assert_eq!(
        r.latency.due_to_completed.count,
        r.states.total() + r.due_not_sent,
        "{table}"
    );
    assert_eq!(r.latency.response.count, r.sent + r.due_not_sent, "{table}");
    // The p99 reflects the backlog (uniform over the 2 s window), not the 0.5 s answers.
    let window_ms = r.window_secs * 1000.0;
    assert!(
        r.latency.due_to_completed.p99_ms >= 0.75 * window_ms,
        "{table}"
    );
    assert!(r.latency.response.p99_ms >= 0.75 * window_ms, "{table}");
    assert!(
        r.latency.due_to_completed.p50_ms >= 0.3 * window_ms,
        "{table}"
    );
}
