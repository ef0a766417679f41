//! T2/T3: one trace across processes. `bindu ingress`, `bindu worker` and `bindu dispatcher`
//! (Postgres + a private nats-server), each exporting its spans to a stand-in OTLP collector
//! under its own service name: the trace a caller starts continues in the ingress, crosses
//! NATS (the command's and the events' headers) into the worker's run and the dispatcher's
//! webhook POST, which sends it on in `traceparent`.

use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;

use crate::process::{self, Agent};
use crate::support::otlp::Collector;
use crate::support::{self, patient_client};
use crate::traces::{hook, send_in_the_callers_trace};

const AGENT: &str = "traces-dist-agent";

fn start(
    role: &str,
    db: &TestDb,
    nats: &NatsServer,
    collector: &Collector,
    extra: &[(&str, &str)],
) -> Agent {
    let keys = std::env::temp_dir().join(format!("bindu-keys-{AGENT}"));
    let mut cmd = process::bindu();
    cmd.env("STORAGE_TYPE", "postgres")
        .env("DATABASE_URL", &db.url)
        .env("SCHEDULER_TYPE", "nats")
        .env("NATS_URL", nats.url())
        .env("BINDU_AGENT_NAME", AGENT)
        .env("STORAGE__NAMESPACE", AGENT)
        .env("BINDU_SHUTDOWN_TIMEOUT", "5")
        .env("BINDU_KEY_DIR", keys)
        .env("TELEMETRY_ENABLED", "true")
        .env("OLTP_ENDPOINT", &collector.url)
        .env("OLTP_SERVICE_NAME", role)
        .env("OLTP_BATCH_SCHEDULE_DELAY_MILLIS", "100")
        // Probes of workers and dispatchers on free ports (tests run many at once).
        .env("BINDU_WORKER_METRICS_ADDR", "127.0.0.1:0")
        .env("PUSH__METRICS_ADDR", "127.0.0.1:0")
        .envs(extra.iter().copied())
        // Spans are recorded at info level.
        .args([role, "--port", "0", "--log-level", "info"]);
    Agent::start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_ingress_worker_and_dispatcher() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let collector = Collector::start().await;
    let (hook, got) = hook().await;
    // The dispatcher first, so its consumer exists before the first event.
    let start = |role: &str, extra: &[(&str, &str)]| start(role, &db, &nats, &collector, extra);
    let dispatcher = start("dispatcher", &[("PUSH__DESTINATIONS", "loopback")]);
    let ingress = start("ingress", &[("PUSH__ENABLED", "true")]);
    let worker = start("worker", &[]);

    let (rpc, run, post) = send_in_the_callers_trace(&ingress.url(), &hook, &got, &collector).await;
    assert_eq!(
        (rpc.as_str(), run.as_str(), post.as_str()),
        ("ingress", "worker", "dispatcher"),
        "each span comes from the process that did the work"
    );
    // Every process kind counts the spans it drops on its own /metrics.
    for (kind, agent) in [("worker", &worker), ("dispatcher", &dispatcher)] {
        let metrics =
            support::get_text(&patient_client(), format!("http://{}/metrics", agent.addr)).await;
        assert!(
            metrics.contains("bindu_telemetry_spans_dropped_total"),
            "{kind}'s /metrics:\n{metrics}"
        );
    }
}
