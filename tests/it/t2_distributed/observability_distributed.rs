//! T2/T3 observability of separate processes (`bindu ingress`, `bindu worker`,
//! `bindu dispatcher` on Postgres and NATS): each serves `/health` (liveness), `/healthz`
//! (readiness) and `/metrics` over HTTP; each exports exactly what the README's metrics
//! table lists for its kind; the dashboards and alert rules name only exported metrics;
//! and with NATS gone every kind turns unready while staying alive.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;
use serde_json::{json, Value};

use crate::process::{self, Agent};
use crate::support::metrics_table::{check_scrape, deploy_file, readme_rows, referenced};
use crate::support::{self, patient_client};

const AGENT: &str = "obs-dist-agent";

async fn get(c: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = support::within("a probe", c.get(url).send()).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.text().await.unwrap())
}

async fn probe(c: &reqwest::Client, addr: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = get(c, &format!("http://{addr}{path}")).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && l.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_kind_serves_its_probes_and_the_metrics_the_readme_lists() {
    let mut nats = NatsServer::start();
    let db = TestDb::new().await;
    let keys = std::env::temp_dir().join(support::unique("bindu-obs-keys"));
    let keys = keys.to_string_lossy().to_string();
    let env = [("BINDU_KEY_DIR", keys.as_str()), ("NATS__ACK_WAIT", "2")];
    let start = |role: &str| {
        Agent::start(process::distributed(
            role,
            AGENT,
            &db.url,
            &nats.url(),
            &env,
        ))
    };
    let dispatcher = start("dispatcher");
    let ingress = start("ingress");
    let worker = start("worker");
    let c = patient_client();
    let sent = support::post_rpc(
        &c,
        &ingress.url(),
        json!(1),
        "message/send",
        json!({"message": support::user_message("observed")}),
    )
    .await;
    assert_eq!(sent["result"]["status"]["state"], "completed", "{sent}");

    let kinds = [
        ("ingress", ingress.addr.clone()),
        ("worker", worker.addr.clone()),
        ("dispatcher", dispatcher.addr.clone()),
    ];
    let mut exported = BTreeSet::new();
    let mut texts = Vec::new();
    for (kind, addr) in &kinds {
        assert!(!addr.is_empty(), "{kind} printed its probes' address");
        let (status, live) = probe(&c, addr, "/health").await;
        assert_eq!(status, 200, "{kind}: {live}");
        assert_eq!(live["live"], true, "{kind}: {live}");
        assert_eq!(live["ready"], true, "{kind}: {live}");
        assert_eq!(live["role"], *kind, "{live}");
        assert_eq!(live["runtime"]["storage_backend"], "postgres", "{live}");
        assert_eq!(live["runtime"]["bus_backend"], "nats", "{live}");
        assert!(
            live["application"]["agent_did"]
                .as_str()
                .is_some_and(|d| d.starts_with("did:")),
            "{kind}: {live}"
        );
        let (status, ready) = probe(&c, addr, "/healthz").await;
        assert_eq!(status, 200, "{kind}: {ready}");
        let (status, ct, text) = get(&c, &format!("http://{addr}/metrics")).await;
        assert_eq!(status, 200, "{kind}");
        assert!(
            ct.starts_with("application/openmetrics-text"),
            "{kind}: {ct}"
        );
        // A dispatcher delivers push notifications whatever `PUSH__ENABLED` says.
        let met: &[&str] = if *kind == "dispatcher" {
            &["push enabled"]
        } else {
            &[]
        };
        let scraped = check_scrape(kind, &text, met);
        exported.extend(scraped.into_keys());
        assert_eq!(value(&text, "bindu_ready", ""), Some(1.0), "{kind}");
        texts.push((*kind, text));
    }
    let text_of = |kind: &str| texts.iter().find(|(k, _)| *k == kind).unwrap().1.clone();
    // The run, its batch and its publishes were counted where they happened.
    let worker_text = text_of("worker");
    assert_eq!(
        value(
            &worker_text,
            "bindu_worker_runs_total",
            r#"state="completed""#
        ),
        Some(1.0),
        "{worker_text}"
    );
    assert_eq!(value(&worker_text, "bindu_worker_slots", ""), Some(256.0));
    assert!(
        value(&worker_text, "bindu_store_batch_size_count", "").unwrap_or(0.0) >= 1.0,
        "{worker_text}"
    );
    assert!(
        value(&worker_text, "bindu_queue_sampled_at_seconds", "").unwrap_or(0.0) > 0.0,
        "the worker sampled the queue: {worker_text}"
    );
    let ingress_text = text_of("ingress");
    assert!(
        value(
            &ingress_text,
            "bindu_bus_publish_duration_seconds_count",
            ""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{ingress_text}"
    );
    assert_eq!(
        value(
            &ingress_text,
            "bindu_rpc_requests_total",
            r#"method="message/send",outcome="ok""#
        ),
        Some(1.0),
        "{ingress_text}"
    );

    // Every metric a dashboard or an alert names is exported by some process kind; those
    // that need a setting these processes lack (authentication) are checked by the
    // in-process test with it on.
    let conditional: BTreeSet<String> = readme_rows()
        .into_iter()
        .filter(|r| r.condition.is_some())
        .map(|r| r.name)
        .collect();
    for file in ["grafana/bindu.json", "prometheus/alerts.yml"] {
        for name in referenced(&deploy_file(file)) {
            assert!(
                exported.contains(&name) || conditional.contains(&name),
                "{file} names {name}, which no process exports"
            );
        }
    }

    // NATS gone: every kind is still alive, and none is ready.
    nats.stop();
    for (kind, addr) in &kinds {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = probe(&c, addr, "/healthz").await;
            if status == 503 {
                assert_eq!(body["runtime"]["bus_ready"], false, "{kind}: {body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind} stayed ready without NATS: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (status, body) = probe(&c, addr, "/health").await;
        assert_eq!(status, 200, "{kind} is alive: {body}");
        assert_eq!(body["ready"], false, "{kind}: {body}");
        let (_, _, text) = get(&c, &format!("http://{addr}/metrics")).await;
        assert_eq!(value(&text, "bindu_ready", ""), Some(0.0), "{kind}");
    }
    worker.kill();
    ingress.kill();
    dispatcher.kill();
}
