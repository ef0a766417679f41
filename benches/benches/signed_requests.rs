//! End to end: what do DID request signatures cost in the request path?
//!
//! An embedded `bindu serve` (echo handler, memory backends, auth on against the fake Hydra
//! of the test support code) takes non-blocking `message/send` from 64 concurrent keep-alive
//! connections, in three modes, each on a fresh server:
//! - `no-auth`: auth off;
//! - `token`: Bearer token of a non-DID client (introspection cached, no signature);
//! - `signed`: Bearer token of a DID client plus `X-DID-*` headers, verified per request
//!   (batched across concurrent requests by `identity::batch`), replay guard on.
//!
//! Every request body is unique and signed before the clock starts, so the load generator
//! spends the same per request in every mode. Target: `signed` ≥ 80 % of `token`.
//!
//! ```sh
//! cargo bench -p bindu-benches --bench signed_requests            # 5 s per mode
//! ```
//! Under `cargo test` it runs each mode for a few hundred requests as a smoke test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu::engine::identity::Identity;
use bindu_ingress::auth::fake_hydra::{fake_hydra, now};
use bindu_schemas::signing::{signing_payload, Form};
use ed25519_dalek::SigningKey;
use serde_json::json;

const CONCURRENCY: usize = 64;
const CALLER: &str = "did:bindu:bench_at_example_com:loadgen:6f1c1f0e-1d6b-4f0a-9f43-0c1f8f7f3a11";

struct Prepared {
    body: String,
    headers: Vec<(&'static str, String)>,
}

fn body(i: usize) -> String {
    json!({"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {
        "message": {"role": "user", "kind": "message", "messageId": uuid::Uuid::new_v4().to_string(),
                    "parts": [{"kind": "text", "text": "Summarise the attached quarterly numbers in three bullet points."}]},
        "configuration": {"blocking": false}}})
    .to_string()
}

fn prepare(n: usize, token: Option<&str>, signer: Option<&Identity>) -> Vec<Prepared> {
    let ts = now();
    (0..n)
        .map(|i| {
            let body = body(i);
            let mut headers = Vec::new();
            if let Some(t) = token {
                headers.push(("authorization", format!("Bearer {t}")));
            }
            if let Some(id) = signer {
                let sig =
                    id.sign_base58(signing_payload(&body, CALLER, ts, Form::Python).as_bytes());
                headers.push(("x-did", CALLER.to_string()));
                headers.push(("x-did-timestamp", ts.to_string()));
                headers.push(("x-did-signature", sig));
            }
            Prepared { body, headers }
        })
        .collect()
}

async fn server(auth: Option<std::net::SocketAddr>) -> bindu::Server {
    let dir = std::env::temp_dir().join(format!("bindu-bench-{}", uuid::Uuid::new_v4().simple()));
    let hydra = auth.map(|a| format!("http://{a}"));
    let mut settings = vec![
        ("server.host", "127.0.0.1"),
        ("server.port", "0"),
        ("identity.dir", dir.to_str().expect("utf-8 temp dir")),
    ];
    if let Some(hydra) = &hydra {
        settings.push(("auth.enabled", "true"));
        settings.push(("hydra.admin_url", hydra));
    }
    let config = bindu::Config::from_settings(&settings).expect("bench settings");
    bindu::start(config, Arc::new(bindu::EchoHandler::default()))
        .await
        .expect("server start")
}

/// Sends every prepared request (or as many as fit in `budget`) from `CONCURRENCY`
/// connections; returns (completed requests, elapsed, non-200 answers).
async fn drive(url: &str, requests: Vec<Prepared>, budget: Duration) -> (usize, Duration, usize) {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let started = Instant::now();
    let deadline = started + budget;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (requests, next, failures, client, url) = (
            requests.clone(),
            next.clone(),
            failures.clone(),
            client.clone(),
            url.to_string(),
        );
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() || Instant::now() >= deadline {
                    return done;
                }
                let r = &requests[i];
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(r.body.clone());
                for (k, v) in &r.headers {
                    req = req.header(*k, v.as_str());
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                    }
                    Ok(resp) => {
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            let status = resp.status();
                            eprintln!(
                                "first failure: HTTP {status}: {}",
                                resp.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first failure: {e}");
                        }
                    }
                }
                done += 1;
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.expect("load worker");
    }
    (total, started.elapsed(), failures.load(Ordering::Relaxed))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, budget) = if full {
        (400_000, Duration::from_secs(5))
    } else {
        (300, Duration::from_secs(10))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (hydra, hydra_addr) = fake_hydra().await;
        let caller = Identity::new(SigningKey::from_bytes(&[42; 32]), "bench@example.com", "loadgen");
        hydra
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(CALLER.into(), caller.public_key_base58());
        hydra.token("signed-token", CALLER, json!(now() + 3600), "agent:read agent:write");
        hydra.token("plain-token", "bench-client", json!(now() + 3600), "agent:read agent:write");

        let mut rates = Vec::new();
        for (mode, auth, token, signer) in [
            ("no-auth", None, None, None),
            ("token", Some(hydra_addr), Some("plain-token"), None),
            ("signed", Some(hydra_addr), Some("signed-token"), Some(&caller)),
        ] {
            // A fresh server per mode: none inherits a store already full of tasks.
            let srv = server(auth).await;
            let prepared = prepare(n, token, signer);
            let url = format!("http://{}/", srv.local_addr());
            let (count, elapsed, failures) = drive(&url, prepared, budget).await;
            let rate = count as f64 / elapsed.as_secs_f64();
            println!(
                "signed_requests/{mode:<8} {count:>7} requests in {:>5.2} s = {rate:>8.0} req/s ({failures} failed)",
                elapsed.as_secs_f64()
            );
            assert_eq!(failures, 0, "{mode}: every request must be accepted");
            rates.push(rate);
            srv.shutdown();
        }
        println!(
            "signed_requests/ratio   signed/token = {:.0} %, signed/no-auth = {:.0} % (target ≥ 80 % of unsigned)",
            100.0 * rates[2] / rates[1],
            100.0 * rates[2] / rates[0]
        );
    });
}
