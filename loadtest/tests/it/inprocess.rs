//! bindu-loadtest against an in-process bindu server on 127.0.0.1 (memory backends): every
//! scenario runs briefly (bounded by a request count and a duration) and the counts it reports
//! must match what the server recorded in its `/metrics`.

use crate::support;

use bindu_loadtest::authority::{self, Grant};
use bindu_loadtest::Options;
use support::{finished, load, load_n, server, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_counts_match_the_server() {
    let s = server(&[]).await;
    let r = load_n(&s.url, "send", "300", "8", &[]).await;
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!(r.sent, 300);
    assert_eq!(r.accepted + r.accepted_after_window, 300);
    assert_eq!(finished(&r), 300, "{}", r.table());
    assert_eq!(r.unfinished, 0);
    assert_eq!(r.states.completed, 300);
    assert_eq!((r.states.total(), r.lost), (300, 0));
    assert_eq!(s.rpc_count("message/send", "ok").await, 300);
    assert_eq!(s.tasks_in("completed").await, 300);
    // Every accepted task was followed by tasks/get polls until it was done.
    assert!(s.rpc_count("tasks/get", "ok").await >= 300);
    assert_eq!(r.latency.response.count, 300);
    assert_eq!(r.latency.accepted_to_completed.count, 300);
    assert!(r.latency.response.max_ms >= r.latency.response.p50_ms);

    // The JSON report carries the same numbers.
    let path = temp_dir("report").with_extension("json");
    bindu_loadtest::write_json(&r, &path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(json["scenario"], "send");
    assert_eq!(json["sent"], 300);
    assert_eq!(json["states"]["completed"], 300);
    assert_eq!(json["errors"]["total"], 0);
    assert_eq!(json["latency"]["response"]["count"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_sends_and_streams_match_the_server() {
    let s = server(&[]).await;
    let r = load_n(&s.url, "send-blocking", "150", "6", &[]).await;
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!((r.sent, r.accepted, r.completed), (150, 150, 150));
    assert_eq!(s.rpc_count("message/send", "ok").await, 150);

    let r = load_n(&s.url, "stream", "150", "6", &["--payload-bytes", "2048"]).await;
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!((r.sent, r.accepted, r.completed), (150, 150, 150));
    assert_eq!(s.rpc_count("message/stream", "ok").await, 150);
    assert_eq!(s.tasks_in("completed").await, 300);
    assert_eq!(r.payload_bytes, Some(2048));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribe_and_mixed_match_the_server() {
    // A little handler time so most resubscribes find their task still running.
    let s = server(&[("worker.echo_delay_ms", "20")]).await;
    let r = load_n(&s.url, "resubscribe", "80", "8", &[]).await;
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!((r.sent, r.accepted, finished(&r)), (80, 80, 80));
    assert_eq!(s.rpc_count("message/send", "ok").await, 80);
    let streamed = s.rpc_count("tasks/resubscribe", "ok").await;
    let refused = s.rpc_count("tasks/resubscribe", "-32004").await;
    assert_eq!(streamed + refused, 80);
    assert_eq!(refused, r.finished_before_resubscribe);

    let before = s.tasks_in("completed").await;
    let r = load_n(&s.url, "mixed", "100", "5", &[]).await;
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!(
        (r.sent, r.accepted + r.accepted_after_window, finished(&r)),
        (100, 100, 100)
    );
    assert_eq!(s.tasks_in("completed").await - before, 100);
    // The default mix is send 5 : send-blocking 2 : stream 2 : resubscribe 1.
    assert_eq!(s.rpc_count("message/stream", "ok").await, 20);
    assert_eq!(s.rpc_count("message/send", "ok").await - 80, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_match_the_server() {
    let s = server(&[]).await;
    let r = load_n(&s.url, "send", "200", "16", &["--rate", "400"]).await;
    assert_eq!(r.mode, "open");
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!(r.sent, 200);
    assert_eq!(r.accepted + r.accepted_after_window, 200);
    assert_eq!(s.rpc_count("message/send", "ok").await, 200);
    assert_eq!(finished(&r), s.tasks_in("completed").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_status_and_code() {
    let (_grant, authority_url) = start_authority(&temp_dir("caller")).await;
    let s = server(&[
        ("auth.enabled", "true"),
        ("hydra.admin_url", &authority_url),
    ])
    .await;
    // No token: every request is refused with 401 / -32009.
    let r = load_n(&s.url, "send", "40", "4", &[]).await;
    assert_eq!(r.accepted, 0);
    assert_eq!(r.errors.total, 40, "{}", r.table());
    assert_eq!(r.errors.http.get("401"), Some(&40));
    assert_eq!(r.errors.jsonrpc.get("-32009"), Some(&40));
    assert_eq!(s.rpc_count("message/send", "ok").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_are_counted_apart_and_their_retry_after_is_waited_out() {
    // A bucket of two, one token back every 2 s: the third message is refused with
    // `Retry-After: 2`; the fourth, sent after waiting that out, finds a token again.
    let s = server(&[
        ("limits.anonymous_rate", "0.5"),
        ("limits.anonymous_burst", "2"),
    ])
    .await;
    let r = load_n(&s.url, "send-blocking", "4", "1", &[]).await;
    let table = r.table();
    assert_eq!(r.errors.too_many_requests, 1, "{table}");
    assert_eq!(r.errors.total, 0, "a 429 is not a failure: {table}");
    assert_eq!(r.accepted + r.accepted_after_window, 3, "{table}");
    assert!(table.contains("refused with HTTP 429"), "{table}");
    assert_eq!(s.rpc_count("message/send", "-32029").await, 1);
}

async fn start_authority(key_dir: &std::path::Path) -> (Grant, String) {
    let identity = bindu_loadtest::caller_identity(key_dir).unwrap();
    let grant = Grant {
        token: "load-test-token".into(),
        client_id: identity.did_key(),
        public_key_base58: identity.public_key_base58(),
        scope: "agent:read agent:write".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(authority::serve(listener, grant.clone()));
    (grant, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_authenticated_requests_are_accepted() {
    let keys = temp_dir("caller");
    let (grant, authority_url) = start_authority(&keys).await;
    let s = server(&[
        ("auth.enabled", "true"),
        ("hydra.admin_url", &authority_url),
    ])
    .await;
    let key_dir = keys.to_str().unwrap();
    let r = load_n(
        &s.url,
        "send",
        "120",
        "6",
        &["--token", &grant.token, "--key-dir", key_dir],
    )
    .await;
    assert!(r.signed && r.authenticated);
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!(r.accepted + r.accepted_after_window, 120);
    assert_eq!(finished(&r), 120);
    assert_eq!(s.rpc_count("message/send", "ok").await, 120);

    // Signed as another DID than the token's client: refused by the signature check.
    let r = load_n(
        &s.url,
        "stream",
        "10",
        "2",
        &[
            "--token",
            &grant.token,
            "--key-dir",
            key_dir,
            "--did",
            "did:key:z6MkNotTheTokensClient",
        ],
    )
    .await;
    assert_eq!(r.accepted, 0);
    assert_eq!(r.errors.http.get("403"), Some(&10), "{}", r.table());
    assert_eq!(s.rpc_count("message/stream", "ok").await, 0);
}

/// Over HTTP+JSON a signed run's `GetTask` polls (bodiless `GET`s) sign their request
/// line, which the server checks, and its sends their bodies: nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_http_json_runs_sign_their_bodiless_polls() {
    let keys = temp_dir("caller-rest");
    let (grant, authority_url) = start_authority(&keys).await;
    let s = server(&[
        ("auth.enabled", "true"),
        ("hydra.admin_url", &authority_url),
    ])
    .await;
    let rest = format!("{}v1", s.url);
    let key_dir = keys.to_str().unwrap();
    let r = load_n(
        &rest,
        "send",
        "40",
        "4",
        &[
            "--a2a-version",
            "1.0",
            "--binding",
            "http-json",
            "--token",
            &grant.token,
            "--key-dir",
            key_dir,
        ],
    )
    .await;
    assert!(r.signed && r.authenticated);
    assert_eq!(r.errors.total, 0, "{}", r.table());
    assert_eq!(finished(&r), 40, "{}", r.table());
    assert!(s.rpc_count("tasks/get", "ok").await >= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_soak_holds_streams_and_measures_server_memory() {
    // Tasks outlive the hold, so every stream stays open until the generator lets go.
    let s = server(&[("worker.echo_delay_ms", "120000")]).await;
    let pid = std::process::id().to_string();
    let r = load(
        &s.url,
        &[
            "--scenario",
            "sse-soak",
            "--streams",
            "40",
            "--duration",
            "2500ms",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    let soak = r.soak.clone().expect("soak results");
    assert_eq!(soak.streams_opened, 40, "{}", r.table());
    assert_eq!(soak.closed_early, 0);
    assert!(soak.rss_before_kib.is_some() && soak.rss_open_kib.is_some());
    assert!(soak.bytes_per_stream.is_some());
    assert_eq!(r.errors.total, 0);
    assert_eq!(s.rpc_count("message/stream", "ok").await, 40);
    assert_eq!(
        s.tasks_in("working").await + s.tasks_in("submitted").await,
        40
    );
}

#[tokio::test]
async fn non_loopback_targets_are_refused_before_any_connection() {
    for url in ["http://10.255.255.1:3773/", "http://example.com/"] {
        let opts =
            Options::parse_args(["bindu-loadtest", "--url", url, "--requests", "1", "--quiet"])
                .unwrap();
        // Refused from the URL alone: no DNS lookup, no connection attempt.
        let e = bindu_loadtest::run(opts).await.expect_err(url).to_string();
        assert!(e.contains("--allow-remote"), "{e}");
    }
}

/// `--a2a-version 1.0`, over JSON-RPC and over HTTP+JSON: the 1.0 methods reach the server
/// (its metrics count them), and the 1.0 answers (`SendMessageResponse`, `StreamResponse`,
/// `TASK_STATE_*`) are read as completions, the send scenario's `GetTask` polls included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_1_0_over_json_rpc_and_http_json_match_the_server() {
    let s = server(&[]).await;
    let rest = format!("{}v1", s.url);
    let runs = [(&s.url, "jsonrpc", 1), (&rest, "http-json", 2)];
    for (url, binding, round) in runs {
        let wire = ["--a2a-version", "1.0", "--binding", binding];
        for scenario in ["send", "send-blocking", "stream"] {
            let r = load_n(url, scenario, "60", "4", &wire).await;
            assert_eq!(r.errors.total, 0, "{binding} {scenario}: {}", r.table());
            assert_eq!(r.sent, 60, "{binding} {scenario}");
            assert_eq!(finished(&r), 60, "{binding} {scenario}: {}", r.table());
            assert_eq!(r.states.completed, 60, "{binding} {scenario}");
            assert_eq!(r.unfinished, 0, "{binding} {scenario}");
        }
        assert_eq!(s.tasks_in("completed").await, round * 180, "{binding}");
    }
    // Every 1.0 request was counted by its method: 60 + 60 sends, 60 streams per binding.
    assert_eq!(s.rpc_count("message/send", "ok").await, 240);
    assert_eq!(s.rpc_count("message/stream", "ok").await, 120);
    assert!(s.rpc_count("tasks/get", "ok").await >= 120);
    // A 0.3 run against the same server still reads 0.3.
    let r = load_n(&s.url, "send-blocking", "20", "2", &[]).await;
    assert_eq!((r.errors.total, r.completed), (0, 20), "{}", r.table());
}
