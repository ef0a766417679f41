//! Observability of `bindu serve` (T1): every metric the README's table lists for it is on
//! `/metrics` (and nothing else), the dashboards and alert rules name only those metrics,
//! and the logs of the built binary name each request's task, context and caller, carry no
//! colour codes when stderr is a file, and never show a token, a DID signature, a payment
//! or a private key. The other process kinds are checked in
//! `t2_distributed::observability_distributed`.

use std::io::Read;
use std::time::{Duration, Instant};

use bindu::engine::identity::Identity;
use bindu_schemas::signing::Form;
use serde_json::{json, Value};

use crate::payments::{b64, nonce, payer, payload};
use crate::process;
use crate::support::hydra::{fake_hydra, now, Hydra};
use crate::support::metrics_table::{check_scrape, deploy_file, readme_rows, referenced};
use crate::support::{self, user_message};

/// A client DID with its key registered at the fake Hydra, and a token for it.
struct Client {
    id: Identity,
    did: String,
    token: String,
}

impl Client {
    fn register(hydra: &Hydra, token: &str) -> Client {
        let id = Identity::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]), "x", "y");
        let did = id.did_key();
        crate::support::hydra::register_key(hydra, &did, &id);
        hydra.token(token, &did, json!(now() + 600), "agent:read agent:write");
        Client {
            id,
            did,
            token: token.to_string(),
        }
    }

    /// Bearer token and DID signature headers for `body`.
    fn headers(&self, body: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![("authorization", format!("Bearer {}", self.token))];
        headers.extend(support::hydra::did_headers(
            &self.id,
            &self.did,
            body,
            now(),
            Form::Python,
        ));
        headers
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = support::within("POST /", req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let text = support::within("the body", resp.text()).await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn send_body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": user_message(text)}})
    .to_string()
}

/// One sample's value: the line of `name{…labels…}` holding every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `bindu serve` with authentication and push notifications on exports exactly what the
/// README's table lists for it (types and labels included), and the new metrics count: a
/// verified signature, an error by code, an HTTP request by route, a run by state, the
/// worker slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_every_metric_the_readme_lists_for_it() {
    let (hydra, hydra_addr) = fake_hydra().await;
    let client = Client::register(&hydra, "metrics-token");
    let dir = std::env::temp_dir().join(support::unique("bindu-obs"));
    let hydra_url = format!("http://{hydra_addr}");
    let server = support::start_echo(&[
        ("server.port", "0"),
        ("auth.enabled", "true"),
        ("hydra.admin_url", &hydra_url),
        ("identity.dir", dir.to_str().unwrap()),
        ("push.enabled", "true"),
        ("worker.concurrency", "7"),
    ])
    .await;
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = send_body("count me");
    let (status, sent) = post(&http, &format!("{base}/"), &body, &client.headers(&body)).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["result"]["status"]["state"], "completed", "{sent}");
    let unknown = r#"{"jsonrpc":"2.0","id":2,"method":"no/such","params":{}}"#;
    let (_, refused) = post(
        &http,
        &format!("{base}/"),
        unknown,
        &client.headers(unknown),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");

    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    check_scrape("serve", &text, &["AUTH__ENABLED", "push enabled"]);

    let has = |name: &str, labels: &[&str]| sample(&text, name, labels);
    assert_eq!(
        has(
            "bindu_auth_signature_verifications_total",
            &[r#"result="verified""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        has("bindu_rpc_errors_total", &[r#"code="-32601""#]),
        Some(1.0)
    );
    assert_eq!(
        has(
            "bindu_rpc_requests_total",
            &[r#"method="message/send""#, r#"outcome="ok""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        has(
            "http_requests_total",
            &[r#"method="POST""#, r#"endpoint="/""#, r#"status="200""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        has("bindu_worker_runs_total", &[r#"state="completed""#]),
        Some(1.0)
    );
    assert_eq!(
        has(
            "bindu_task_duration_seconds_count",
            &[r#"state="completed""#]
        ),
        Some(1.0)
    );
    assert_eq!(has("bindu_worker_slots", &[]), Some(7.0));
    assert_eq!(has("bindu_worker_slots_busy", &[]), Some(0.0));
    assert_eq!(has("bindu_ready", &[]), Some(1.0));
    assert_eq!(has("bindu_sse_streams_open", &[]), Some(0.0));
    server.shutdown();
    let _ = server.wait().await;
}

/// The Grafana dashboard and the alert rules name only metrics of the README's table (the
/// distributed test checks them against what each process kind really exports), and the
/// dashboard is JSON Grafana can import.
#[test]
fn dashboards_and_alerts_name_only_metrics_of_the_readme_table() {
    let names: Vec<String> = readme_rows().into_iter().map(|r| r.name).collect();
    let dashboard = deploy_file("grafana/bindu.json");
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    for (file, text) in [
        ("grafana/bindu.json", dashboard.clone()),
        (
            "prometheus/alerts.yml",
            deploy_file("prometheus/alerts.yml"),
        ),
    ] {
        let refs = referenced(&text);
        assert!(refs.len() > 5, "{file} names metrics: {refs:?}");
        for r in refs {
            assert!(
                names.contains(&r),
                "{file} names {r}, which is not in the README's metrics table"
            );
        }
    }
}

/// Reads `path` until `pred` holds for its text, at most 30 s.
fn wait_for_log(path: &std::path::Path, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let _ = f.read_to_string(&mut text);
        }
        if pred(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never logged:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The built binary, logging at its most verbose into a file: a paid, authenticated,
/// DID-signed send completes; its log lines name the task, the context and the caller; the
/// file holds no ANSI escape code; and no secret the request carried (the token, the DID
/// signature, the payment header and its signature) nor the agent's private key appears.
/// Starts `bindu serve --port 0` with `envs`, its standard error written to `log`; the
/// process and the address it says it listens on.
fn serve_logging_to(envs: &[(&str, &str)], log: &std::path::Path) -> (std::process::Child, String) {
    let child = process::bindu()
        .envs(envs.iter().copied())
        .args(["serve", "--port", "0"])
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let started = wait_for_log(log, "the listening address", |t| {
        t.contains("bindu: agent listening on ")
    });
    let addr = started
        .split("bindu: agent listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_task_context_and_caller_and_never_a_secret_nor_a_colour() {
    let (hydra, hydra_addr) = fake_hydra().await;
    let client = Client::register(&hydra, "tok-SECRET-5f0e1d2c");
    let (fac_url, _fac) = bindu_ingress::payments::fake_facilitator::start()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(support::unique("bindu-logs"));
    let config = crate::payments::write_priced_config(&dir, "log-agent", "");
    let log = dir.join("bindu.log");
    let keys = dir.join("keys");
    let hydra_url = format!("http://{hydra_addr}");
    let (mut child, addr) = serve_logging_to(
        &[
            ("AUTH__ENABLED", "true"),
            ("HYDRA__ADMIN_URL", hydra_url.as_str()),
            ("BINDU_KEY_DIR", keys.to_str().unwrap()),
            ("BINDU_CONFIG", config.to_str().unwrap()),
            ("X402__FACILITATOR_URL", fac_url.as_str()),
            (
                "LOGGING__DEFAULT_LEVEL",
                "debug,bindu=trace,bindu_ingress=trace,bindu_workers=trace,bindu_engine=trace",
            ),
        ],
        &log,
    );
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let card: Value = http
        .get(format!("{base}/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let req = crate::payments::x402_extension(&card)["params"]["accepts"][0].clone();
    let paid = payload(&payer(), &req, crate::payments::now() + 300, nonce());
    let payment_signature = paid["payload"]["signature"].as_str().unwrap().to_string();
    let payment = b64(&paid);
    let body = send_body("a paid, signed request");
    let mut headers = client.headers(&body);
    let did_signature = headers[3].1.clone();
    headers.push(("payment-signature", payment.clone()));
    let (status, sent) = post(&http, &format!("{base}/"), &body, &headers).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["result"]["status"]["state"], "completed", "{sent}");
    let task_id = sent["result"]["id"].as_str().unwrap().to_string();
    let context_id = sent["result"]["contextId"].as_str().unwrap().to_string();
    // Refusals must not log what they refused either: a wrong token, a signature over
    // other bytes, the same payment again (a replay).
    let url = format!("{base}/");
    let wrong = "tok-SECRET-wrong-9a8b";
    let mut refused = client.headers(&body);
    refused[0].1 = format!("Bearer {wrong}");
    assert_eq!(post(&http, &url, &body, &refused).await.0, 401);
    let other = send_body("other bytes");
    let forged_signature = client.headers(&other)[3].1.clone();
    let mut forged = client.headers(&body);
    forged[3].1 = forged_signature.clone();
    assert_eq!(post(&http, &url, &body, &forged).await.0, 403);
    let again = send_body("the same payment again");
    let mut replay = client.headers(&again);
    replay.push(("x-payment", payment.clone()));
    assert_eq!(post(&http, &url, &again, &replay).await.0, 402);

    let text = wait_for_log(&log, "the task's outcome", |t| {
        t.lines()
            .any(|l| l.contains(&task_id) && l.contains("task finished"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or(text);

    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a log file");
    let private_pem = std::fs::read_to_string(keys.join("private.pem")).unwrap();
    let private_b64: String = private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (what, secret) in [
        ("the bearer token", client.token.as_str()),
        ("the refused token", wrong),
        ("the DID signature", did_signature.as_str()),
        ("the forged DID signature", forged_signature.as_str()),
        ("the payment header", payment.as_str()),
        ("the payment's signature", payment_signature.as_str()),
        ("the agent's private key", private_b64.as_str()),
    ] {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret),
            "{what} appears in the logs:\n{text}"
        );
    }
    // The request's lines (ingress) and the run's (worker) name the task, the context and
    // the caller.
    let named =
        |l: &&str| l.contains(&task_id) && l.contains(&context_id) && l.contains(&client.did);
    assert!(
        text.lines().filter(named).any(|l| l.contains("rpc{")),
        "no request log line names task, context and caller:\n{text}"
    );
    assert!(
        text.lines().filter(named).any(|l| l.contains("task{")),
        "no worker log line names task, context and caller:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `LOGGING__FORMAT=json`: every log line is one JSON object, and a request's lines carry
/// the `rpc` span with its method, task and context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_request_span() {
    let dir = std::env::temp_dir().join(support::unique("bindu-json-logs"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("bindu.log");
    let (mut child, addr) = serve_logging_to(
        &[
            ("BINDU_KEY_DIR", dir.join("keys").to_str().unwrap()),
            ("LOGGING__FORMAT", "json"),
            ("LOGGING__DEFAULT_LEVEL", "info,bindu_ingress=debug"),
        ],
        &log,
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (status, sent) = post(&http, &format!("http://{addr}/"), &send_body("json"), &[]).await;
    assert_eq!(status, 200, "{sent}");
    let task_id = sent["result"]["id"].as_str().unwrap().to_string();
    let text = wait_for_log(&log, "the accepted task", |t| t.contains(&task_id));
    let _ = child.kill();
    let _ = child.wait();
    // The CLI's own start-up line is plain text; every log line is JSON.
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.starts_with("bindu: "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["fields"]["message"] == "task accepted")
        .unwrap_or_else(|| panic!("no `task accepted` line:\n{text}"));
    assert_eq!(accepted["span"]["name"], "rpc", "{accepted}");
    assert_eq!(accepted["span"]["method"], "message/send", "{accepted}");
    assert_eq!(accepted["span"]["task_id"], task_id.as_str(), "{accepted}");
    assert_eq!(
        accepted["span"]["context_id"], sent["result"]["contextId"],
        "{accepted}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
