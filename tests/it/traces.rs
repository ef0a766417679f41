//! OpenTelemetry traces of `bindu serve` (the built binary, memory backends) exported to a
//! stand-in OTLP collector on loopback ([`support::otlp`]): an incoming `traceparent` is
//! continued through the worker's run to the webhook POST, which carries it on; an
//! unreachable collector fails no request and its spans are counted as dropped; bad
//! settings stop the process with the key named and no secret shown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::process::{self, exits_2, Agent};
use crate::support::otlp::{Collector, Span};
use crate::support::{self, get_text, metric, patient_client, post_rpc, send_params};

/// A trace id and parent span id of the caller's own trace.
pub const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CALLER_SPAN: &str = "00f067aa0ba902b7";

pub fn traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// A webhook receiver that keeps each notification with its request headers.
pub async fn hook() -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let g = got.clone();
    let url = support::serve_hook(axum::routing::post(
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                g.lock().unwrap().push((headers, v));
                axum::http::StatusCode::OK
            }
        },
    ))
    .await;
    (url, got)
}

/// Waits (at most 30 s) until the receiver got the notification of `state`, and returns its
/// headers.
pub async fn notification_of(got: &Arc<Mutex<Vec<(HeaderMap, Value)>>>, state: &str) -> HeaderMap {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = got
            .lock()
            .unwrap()
            .iter()
            .find_map(|(h, v)| (v["status"]["state"] == state).then(|| h.clone()));
        if let Some(h) = found {
            return h;
        }
        assert!(Instant::now() < deadline, "no {state} notification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The request a test sends: a non-blocking echo task with a push config for `hook`.
pub fn send(hook: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {
        "message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                    "parts": [{"kind": "text", "text": "trace me"}]},
        "configuration": {"blocking": false,
                          "pushNotificationConfig": {"url": hook, "token": "t"}}}})
}

pub fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The parent of `span` among `spans`.
pub fn parent_of<'a>(spans: &'a [Span], span: &Span) -> Option<&'a Span> {
    spans.iter().find(|s| s.span_id == span.parent_span_id)
}

/// Asserts the shape every trace of one task has: the ingress's `message/send` continues the
/// caller's span; the worker's run is its child; the webhook POSTs are children of the run,
/// and the POST that delivered the `completed` notification sent its own span as
/// `traceparent`. Returns the services of the ingress, run and POST spans.
pub fn assert_one_trace(spans: &[Span], completed: &HeaderMap) -> (String, String, String) {
    let rpc = named(spans, "message/send");
    assert_eq!(rpc.len(), 1, "{spans:#?}");
    let rpc = rpc[0];
    assert_eq!(
        rpc.parent_span_id, CALLER_SPAN,
        "the ingress continues the caller's span"
    );
    let run = named(spans, "worker.run");
    assert_eq!(run.len(), 1, "{spans:#?}");
    let run = run[0];
    assert_eq!(
        run.parent_span_id, rpc.span_id,
        "the run follows the request"
    );
    let transition = named(spans, "store.transition");
    assert!(
        transition
            .iter()
            .any(|s| parent_of(spans, s).is_some_and(|p| p.span_id == run.span_id)),
        "the outcome's write is part of the run: {spans:#?}"
    );
    let posts = named(spans, "webhook.post");
    assert!(!posts.is_empty(), "{spans:#?}");
    // Each POST continues the run that published its event, or the request (`submitted`).
    for post in &posts {
        assert!(
            post.parent_span_id == run.span_id || post.parent_span_id == rpc.span_id,
            "{post:#?}"
        );
    }
    let header = completed
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the webhook POST carries traceparent");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts[1], CALLER_TRACE, "{header}");
    let post = posts
        .iter()
        .find(|p| p.span_id == parts[2])
        .unwrap_or_else(|| panic!("traceparent {header} names no webhook.post span"));
    assert_eq!(post.parent_span_id, run.span_id);
    (
        rpc.service.clone(),
        run.service.clone(),
        post.service.clone(),
    )
}

/// Sends a message with a push config for `hook` to `url` inside the caller's trace, waits
/// for its `completed` webhook and for the spans of the whole trace, and checks they form
/// one trace: the services of the ingress, the worker run and the webhook POST spans.
pub async fn send_in_the_callers_trace(
    url: &str,
    hook: &str,
    got: &Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    collector: &crate::support::otlp::Collector,
) -> (String, String, String) {
    let resp: Value = patient_client()
        .post(url)
        .header("traceparent", traceparent())
        .json(&send(hook))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp["result"]["id"].is_string(), "{resp}");
    let completed = notification_of(got, "completed").await;
    // The span of the POST that delivered `completed` (its `traceparent` names it) may be
    // exported after the others: wait for it too.
    let post_span = completed
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split('-').nth(2))
        .unwrap_or_default()
        .to_string();
    let spans = collector
        .wait_for(CALLER_TRACE, Duration::from_secs(30), |s| {
            ["message/send", "worker.run", "store.transition"]
                .iter()
                .all(|n| !named(s, n).is_empty())
                && named(s, "webhook.post").len() >= 2
                && named(s, "webhook.post")
                    .iter()
                    .any(|p| p.span_id == post_span)
        })
        .await;
    assert_one_trace(&spans, &completed)
}

fn serve(extra: &[(&str, &str)]) -> Agent {
    let keys = std::env::temp_dir().join("bindu-keys-traces");
    let mut cmd = process::bindu();
    cmd.env("BINDU_KEY_DIR", keys)
        .env("BINDU_AGENT_NAME", "traced-agent")
        .env("PUSH__ENABLED", "true")
        .env("PUSH__DESTINATIONS", "loopback")
        .envs(extra.iter().copied())
        .args(["serve", "--port", "0", "--log-level", "info"]);
    Agent::start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_from_the_callers_traceparent_to_the_webhook_post() {
    let collector = Collector::start().await;
    let (hook, got) = hook().await;
    let agent = serve(&[
        ("TELEMETRY_ENABLED", "true"),
        ("OLTP_ENDPOINT", collector.url.as_str()),
        ("OLTP_BATCH_SCHEDULE_DELAY_MILLIS", "100"),
        ("OLTP_HEADERS", r#"{"x-collector-key": "k-123"}"#),
    ]);
    let (ingress, worker, dispatcher) =
        send_in_the_callers_trace(&agent.url(), &hook, &got, &collector).await;
    for service in [ingress, worker, dispatcher] {
        assert_eq!(service, "traced-agent", "the agent's name by default");
    }
    // OLTP_HEADERS go with every export.
    let headers = collector.headers.lock().unwrap().clone();
    assert!(headers
        .iter()
        .all(|h| h.get("x-collector-key").is_some_and(|v| v == "k-123")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_fails_no_request_and_its_spans_are_counted_as_dropped() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for protocol in ["http/protobuf", "grpc"] {
        let agent = serve(&[
            ("TELEMETRY_ENABLED", "true"),
            ("OLTP_ENDPOINT", endpoint.as_str()),
            ("OLTP_PROTOCOL", protocol),
            ("OLTP_BATCH_SCHEDULE_DELAY_MILLIS", "20"),
            ("OLTP_BATCH_EXPORT_TIMEOUT_MILLIS", "500"),
            ("OLTP_BATCH_MAX_QUEUE_SIZE", "8"),
            ("OLTP_BATCH_MAX_EXPORT_BATCH_SIZE", "4"),
        ]);
        let client = patient_client();
        for i in 0..20 {
            let params = send_params("hello", json!({"blocking": true}));
            let resp = post_rpc(&client, &agent.url(), json!(i), "message/send", params).await;
            assert_eq!(
                resp["result"]["status"]["state"], "completed",
                "{protocol}: {resp}"
            );
        }
        // The failed exports' spans are counted (bounded wait: exports run every 20 ms).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = get_text(&client, format!("http://{}/metrics", agent.addr)).await;
            let dropped = metric(&text, "bindu_telemetry_spans_dropped_total");
            if dropped > 0.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{protocol}: no dropped span counted:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn bad_telemetry_settings_stop_with_the_key_named_and_no_secret_shown() {
    let err = exits_2(
        &[("OLTP_HEADERS", "Authorization=sk-secret-1")],
        &["config"],
    );
    assert!(err.contains("OLTP_HEADERS"), "{err}");
    assert!(!err.contains("sk-secret-1"), "{err}");
    let err = exits_2(&[("OLTP_HEADERS", r#"{"Authorization": 12}"#)], &["config"]);
    assert!(err.contains("OLTP_HEADERS"), "{err}");
    assert!(exits_2(&[("OLTP_SAMPLING_RATIO", "2")], &["config"]).contains("OLTP_SAMPLING_RATIO"));
    assert!(exits_2(&[("OLTP_PROTOCOL", "http/json")], &["config"]).contains("OLTP_PROTOCOL"));
    assert!(exits_2(&[("OLTP_ENDPOINT", "collector:4318")], &["config"]).contains("OLTP_ENDPOINT"));
    // The standard variable is read when the process starts its exporter.
    let err = exits_2(
        &[
            ("TELEMETRY_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
        &["serve", "--port", "0"],
    );
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_handlers_call_is_a_genai_span_that_sends_the_trace_on() {
    let collector = Collector::start().await;
    let fake = crate::fake_openai::FakeOpenAi::start().await;
    fake.script(vec![crate::fake_openai::Reply::stream(&["Hel", "lo"])]);
    let base = fake.base_url();
    let agent = serve(&[
        ("TELEMETRY_ENABLED", "true"),
        ("OLTP_ENDPOINT", collector.url.as_str()),
        ("OLTP_BATCH_SCHEDULE_DELAY_MILLIS", "100"),
        ("BINDU_HANDLER", "openai"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("BINDU_HANDLER_MODEL", "fake-model"),
    ]);
    let resp: Value = patient_client()
        .post(agent.url())
        .header("traceparent", traceparent())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                      "params": send_params("greet me", json!({"blocking": true}))}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["result"]["status"]["state"], "completed", "{resp}");
    // The chat span ends first; its parents end after it and may come in a later export.
    let spans = collector
        .wait_for(CALLER_TRACE, Duration::from_secs(30), |s| {
            ["chat fake-model", "handler.run", "worker.run"]
                .iter()
                .all(|name| !named(s, name).is_empty())
        })
        .await;
    let chat = named(&spans, "chat fake-model")[0];
    for (key, value) in [
        ("gen_ai.system", "openai"),
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "fake-model"),
        ("gen_ai.response.model", "fake-model"),
        ("gen_ai.usage.input_tokens", "11"),
        ("gen_ai.usage.output_tokens", "2"),
    ] {
        assert_eq!(chat.attribute(key), Some(value), "{key}: {chat:#?}");
    }
    let handler = parent_of(&spans, chat).expect("the chat span's parent was exported");
    assert_eq!(handler.name, "handler.run");
    let run = parent_of(&spans, handler).expect("the handler's parent");
    assert_eq!(run.name, "worker.run");
    // The model's server is told the trace, with the chat span as the parent.
    assert_eq!(
        fake.traceparents(),
        vec![Some(format!("00-{CALLER_TRACE}-{}-01", chat.span_id))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindu_call_starts_a_trace_the_agent_continues() {
    let collector = Collector::start().await;
    let agent = serve(&[
        ("TELEMETRY_ENABLED", "true"),
        ("OLTP_ENDPOINT", collector.url.as_str()),
        ("OLTP_BATCH_SCHEDULE_DELAY_MILLIS", "100"),
    ]);
    let url = agent.url();
    let endpoint = collector.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        process::run_bindu(
            &[
                ("TELEMETRY_ENABLED", "true"),
                ("OLTP_ENDPOINT", endpoint.as_str()),
                ("OLTP_SERVICE_NAME", "the-caller"),
            ],
            &["call", &url, "message/send", "hello"],
        )
    })
    .await
    .unwrap();
    process::assert_success(&out);
    // The caller exported its span before exiting; the agent's continue its trace.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (client, server) = loop {
        let spans = collector.spans();
        let client = spans
            .iter()
            .find(|s| s.service == "the-caller" && s.name == "message/send")
            .cloned();
        if let Some(client) = client {
            let server = spans
                .iter()
                .find(|s| s.service == "traced-agent" && s.parent_span_id == client.span_id)
                .cloned();
            if let Some(server) = server {
                break (client, server);
            }
        }
        assert!(Instant::now() < deadline, "{spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(server.name, "message/send");
    assert_eq!(server.trace_id, client.trace_id);
    assert!(
        client.parent_span_id.is_empty(),
        "the caller's span is the root"
    );
}
