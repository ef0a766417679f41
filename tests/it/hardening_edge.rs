//! The HTTP edge under hostile and slow clients (issue 14 items 1, 2, 4 and 13), through a
//! real server on a free port of 127.0.0.1: slow-loris connections, trickled bodies and idle
//! keep-alives are closed on time without locking fresh clients out; oversized messages are
//! refused before any work; a web page's `text/plain` post and a rebound `Host` get nothing;
//! a streaming call's error comes as an SSE event.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu::schemas::jsonrpc::code;
use bindu::{HandlerInput, HandlerOutput};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INVALID_REQUEST: i64 = code::INVALID_REQUEST as i64;
const INVALID_PARAMS: i64 = code::INVALID_PARAMS as i64;
const TASK_NOT_FOUND: i64 = code::TASK_NOT_FOUND as i64;
const UNSUPPORTED_OPERATION: i64 = code::UNSUPPORTED_OPERATION as i64;

/// An HTTP answer read off a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Reads an answer to its end (the request says `Connection: close`, or the server closes).
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    within("reading an answer", stream.read_to_end(&mut raw))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sends one request (`line`: method and path) with `headers` (each `Name: value`) and
/// `body` on a fresh connection.
async fn request(addr: SocketAddr, line: &str, headers: &[&str], body: &str) -> Answer {
    let mut stream = within("connecting", TcpStream::connect(addr))
        .await
        .unwrap();
    let mut text = format!("{line} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

fn send_body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": user_message(text)}})
    .to_string()
}

/// Whether the server closes `stream` within `limit` (end of stream or a reset).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // A 408 or other answer before the close is fine; keep reading to the end.
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

/// A handler that counts its runs and echoes.
fn counting() -> (Arc<AtomicUsize>, Arc<dyn bindu::Handler>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = runs.clone();
    let h = handler(move |input: HandlerInput| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let text = input.history.last().map(|m| m.text()).unwrap_or_default();
            Ok(HandlerOutput::Text(text))
        }
    });
    (runs, h)
}

// ---- 1. slow clients -------------------------------------------------------------------

#[tokio::test]
async fn a_slow_loris_run_does_not_keep_a_fresh_client_from_being_served() {
    const SLOW: usize = 200;
    let srv = TestServer::echo_with(&[
        ("server.header_timeout_secs", "1"),
        // Fewer than the slow connections: the rest wait in the accept backlog.
        ("server.max_connections", "150"),
    ])
    .await;
    let started = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = within("a slow connection", TcpStream::connect(srv.addr))
            .await
            .unwrap();
        s.write_all(format!("POST / HTTP/1.1\r\nHost: {}\r\n", srv.addr).as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    // A fresh client is served while the slow connections hold (or wait for) every slot.
    let fresh = within(
        "a fresh client's send",
        request(
            srv.addr,
            "POST /",
            &["Host: 127.0.0.1", "Content-Type: application/json"],
            &send_body("fresh"),
        ),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.json()["result"]["status"]["state"], "completed");
    // Every slow connection is closed once its header time is up (those that waited in the
    // backlog one header timeout after they were accepted).
    let closed = futures::future::join_all(
        slow.iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(8))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of {SLOW} slow connections still open");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let srv = TestServer::echo_with(&[("server.idle_timeout_secs", "1")]).await;
    let mut s = within("connecting", TcpStream::connect(srv.addr))
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = within("the first answer", s.read(&mut buf)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Kept alive (no close yet), then closed once idle for a second.
    assert!(
        closed_within(&mut s, Duration::from_secs(6)).await,
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn a_body_that_trickles_is_refused_after_the_body_timeout() {
    let (runs, h) = counting();
    let srv = TestServer::start(&[("server.body_timeout_secs", "1")], h).await;
    let mut s = within("connecting", TcpStream::connect(srv.addr))
        .await
        .unwrap();
    let body = send_body("never whole");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut s).await;
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert_eq!(answer.json()["error"]["code"], INVALID_REQUEST);
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_long_answer_is_not_cut_by_the_connection_timeouts() {
    let h = handler(|_input: HandlerInput| async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(HandlerOutput::Text("late".into()))
    });
    let srv = TestServer::start(
        &[
            ("server.header_timeout_secs", "1"),
            ("server.idle_timeout_secs", "1"),
            ("server.body_timeout_secs", "1"),
        ],
        h,
    )
    .await;
    // A blocking send and a stream both outlive every connection timeout.
    let task = srv.send(user_message("wait")).await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
    let events = srv.stream_message(json!(1), user_message("wait")).await;
    let last = events.last().unwrap();
    assert_eq!(last["result"]["final"], true, "{events:?}");
    assert_eq!(last["result"]["status"]["state"], "completed", "{events:?}");
}

/// A CA and a server certificate for 127.0.0.1 in a fresh identity directory; the CA's PEM.
fn tls_files() -> (std::path::PathBuf, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    let dir = std::env::temp_dir().join(unique("bindu-edge-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "edge test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls_cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls_key.pem"), key.serialize_pem()).unwrap();
    // A private key the server accepts: readable by its owner only.
    std::fs::set_permissions(
        dir.join("tls_key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    (dir, ca_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_handshakes_are_capped_and_closed_after_the_handshake_timeout() {
    const SILENT: usize = 8;
    let (dir, ca_pem) = tls_files();
    let srv = TestServer::echo_with(&[
        ("identity.dir", dir.to_str().unwrap()),
        ("mtls.enabled", "true"),
        ("mtls.mode", "off"),
        ("server.max_tls_handshakes", "4"),
        ("server.tls_handshake_timeout_secs", "1"),
    ])
    .await;
    // Connections that never send a ClientHello hold every handshake slot.
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(
            within("a silent connection", TcpStream::connect(srv.addr))
                .await
                .unwrap(),
        );
    }
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let resp = within(
        "an HTTPS client behind the silent ones",
        https.get(format!("https://{}/healthz", srv.addr)).send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let closed = futures::future::join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(6))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of {SILENT} silent TLS connections still open"
    );
    drop(srv);
    std::fs::remove_dir_all(dir).ok();
}

// ---- 2. bounded work per request -------------------------------------------------------

fn message_with_parts(n: usize) -> Value {
    let parts: Vec<Value> = (0..n)
        .map(|i| json!({"kind": "text", "text": format!("part {i}")}))
        .collect();
    json!({"role": "user", "messageId": unique("msg"), "parts": parts})
}

#[tokio::test]
async fn a_message_with_sixty_thousand_parts_is_refused_at_once_with_the_limit_named() {
    let (runs, h) = counting();
    let srv = TestServer::with_handler(h).await;
    let started = Instant::now();
    let resp = srv.rpc_send(message_with_parts(60_000)).await;
    assert_eq!(error_code(&resp), INVALID_PARAMS, "{resp}");
    let message = resp["error"]["message"].as_str().unwrap();
    assert!(message.contains("server.max_parts"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // The same on a stream: one SSE event with the error.
    let events = srv
        .open_stream(
            json!(2),
            "message/stream",
            json!({"message": message_with_parts(1001)}),
        )
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error"]["code"], INVALID_PARAMS);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_message_at_the_parts_limit_is_answered_with_every_part_signed() {
    let srv = TestServer::echo().await;
    let task = srv
        .rpc_ok("message/send", json!({"message": message_with_parts(1000)}))
        .await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
    let parts = task["artifacts"][0]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1000);
    let signatures: std::collections::HashSet<&str> = parts
        .iter()
        .map(|p| p["metadata"]["did.message.signature"].as_str().unwrap())
        .collect();
    assert_eq!(
        signatures.len(),
        1000,
        "each distinct text has its own signature"
    );
}

#[tokio::test]
async fn too_many_reference_task_ids_are_refused_and_the_limit_is_configurable() {
    let srv = TestServer::echo_with(&[
        ("server.max_reference_task_ids", "3"),
        ("server.max_parts", "2"),
    ])
    .await;
    let refs = |n: usize| (0..n).map(|i| format!("ref-{i}")).collect::<Vec<_>>();
    let resp = srv
        .rpc_send(user_message_with("x", json!({"referenceTaskIds": refs(4)})))
        .await;
    assert_eq!(error_code(&resp), INVALID_PARAMS, "{resp}");
    let message = resp["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("server.max_reference_task_ids"),
        "{message}"
    );
    let task = srv
        .send(user_message_with("x", json!({"referenceTaskIds": refs(3)})))
        .await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(
        srv.rpc_err("message/send", json!({"message": message_with_parts(3)}))
            .await,
        INVALID_PARAMS
    );
    let task = srv.send(message_with_parts(2)).await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
}

// ---- 4. what a web page can send -------------------------------------------------------

#[tokio::test]
async fn a_post_that_is_not_json_is_refused_with_415_and_never_runs() {
    let (runs, h) = counting();
    let srv = TestServer::with_handler(h).await;
    let body = send_body("from a web page");
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        // fetch() with a Blob body sends no type at all, still without a preflight.
        None,
    ] {
        let mut headers = vec!["Host: 127.0.0.1".to_string()];
        headers.extend(content_type.map(|c| format!("Content-Type: {c}")));
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let answer = request(srv.addr, "POST /", &headers, &body).await;
        assert_eq!(answer.status, 415, "{content_type:?}: {}", answer.body);
        let v = answer.json();
        assert_eq!(v["jsonrpc"], "2.0", "{content_type:?}");
        assert_eq!(v["error"]["code"], INVALID_REQUEST, "{content_type:?}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "a refused post ran");
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        // A new message each time: the same one again would be answered with its first
        // task (idempotent sends) and not run twice.
        let answer = request(
            srv.addr,
            "POST /",
            &["Host: 127.0.0.1", &format!("Content-Type: {content_type}")],
            &send_body("from a client"),
        )
        .await;
        assert_eq!(answer.status, 200, "{content_type}: {}", answer.body);
        assert_eq!(answer.json()["result"]["status"]["state"], "completed");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_rebound_host_name_gets_421_and_known_names_are_served() {
    let (runs, h) = counting();
    let srv = TestServer::with_handler(h).await;
    let port = srv.addr.port();
    let post = |host: String| {
        // A new message each time (the same one again would not run again).
        let body = send_body("hello");
        async move {
            request(
                srv.addr,
                "POST /",
                &[&format!("Host: {host}"), "Content-Type: application/json"],
                &body,
            )
            .await
        }
    };
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_string(),
        format!("localhost.attacker.example:{port}"),
    ] {
        let answer = post(host.clone()).await;
        assert_eq!(answer.status, 421, "{host}: {}", answer.body);
        assert_eq!(answer.json()["error"]["code"], INVALID_REQUEST, "{host}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let answer = post(host.clone()).await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.body);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // The public paths answer under any name (probes and load balancers use addresses);
    // `/` itself does not.
    let card = request(
        srv.addr,
        "GET /.well-known/agent-card.json",
        &["Host: attacker.example"],
        "",
    )
    .await;
    assert_eq!(card.status, 200, "{}", card.body);
    let root = request(srv.addr, "GET /", &["Host: attacker.example"], "").await;
    assert_eq!(root.status, 421, "{}", root.body);
}

#[tokio::test]
async fn configured_and_deployment_host_names_are_served_and_a_star_admits_any() {
    let srv = TestServer::echo_with(&[
        ("server.allowed_hosts", "agent.internal, *.corp.example"),
        ("server.deployment_url", "https://agent.example.com"),
    ])
    .await;
    let body = send_body("hi");
    for (host, status) in [
        ("agent.internal:3773", 200),
        ("a.corp.example", 200),
        ("agent.example.com", 200),
        ("other.example", 421),
    ] {
        let answer = request(
            srv.addr,
            "POST /",
            &[&format!("Host: {host}"), "Content-Type: application/json"],
            &body,
        )
        .await;
        assert_eq!(answer.status, status, "{host}: {}", answer.body);
    }
    let any = TestServer::echo_with(&[("server.allowed_hosts", "*")]).await;
    let answer = request(
        any.addr,
        "POST /",
        &["Host: anything.example", "Content-Type: application/json"],
        &body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

// ---- 13. errors of streaming calls -----------------------------------------------------

#[tokio::test]
async fn a_streaming_call_that_fails_gets_one_sse_event_with_the_error() {
    let srv = TestServer::echo().await;
    // Unknown task.
    let events = srv
        .open_stream(
            json!("r1"),
            "tasks/resubscribe",
            json!({"id": "no-such-task"}),
        )
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error"]["code"], TASK_NOT_FOUND);
    assert_eq!(events[0]["id"], "r1");
    assert_eq!(events[0]["jsonrpc"], "2.0");
    // A task that has ended.
    let task = srv.send(user_message("done")).await;
    let events = srv
        .open_stream(json!(7), "tasks/resubscribe", json!({"id": task["id"]}))
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error"]["code"], UNSUPPORTED_OPERATION);
    assert_eq!(events[0]["id"], 7);
    // Invalid params of message/stream, and a follow-up to a finished task.
    let events = srv
        .open_stream(
            json!(8),
            "message/stream",
            json!({"message": {"role": "user", "messageId": "m", "parts": []}}),
        )
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error"]["code"], INVALID_PARAMS);
    let events = srv
        .open_stream(
            json!(9),
            "message/stream",
            json!({"message": user_message_with("again", json!({"taskId": task["id"]}))}),
        )
        .await
        .read_all()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0]["error"]["code"].is_i64(), "{events:?}");
    // A non-streaming method still answers JSON.
    let (status, resp) = srv
        .raw_post(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"id": "nope"}})
                .to_string(),
        )
        .await;
    assert_eq!((status, error_code(&resp)), (200, TASK_NOT_FOUND));
}
