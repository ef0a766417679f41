//! Shared by the integration tests: an in-process bindu server on 127.0.0.1 (memory
//! backends), its `/metrics`, and a bounded `bindu-loadtest` run against it.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bindu::Config;
use bindu_loadtest::{Options, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound on every wait here.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "bindu-loadtest-{what}-{}-{}",
        std::process::id(),
        rand_suffix()
    ))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub struct Server {
    pub server: bindu::Server,
    pub url: String,
}

fn config(settings: &[(&str, &str)]) -> Config {
    let dir = temp_dir("agent");
    let mut all = vec![
        ("server.host", "127.0.0.1"),
        ("server.port", "0"),
        ("identity.dir", dir.to_str().unwrap()),
        ("logging.default_level", "warn"),
    ];
    all.extend_from_slice(settings);
    Config::from_settings(&all).unwrap()
}

/// The built-in (echo) handler with `settings` on top of the test defaults.
pub async fn server(settings: &[(&str, &str)]) -> Server {
    let config = config(settings);
    let handler = bindu::builtin_handler(&config).unwrap();
    server_with(config, handler).await
}

/// `handler` behind the test defaults.
pub async fn server_with_handler(handler: Arc<dyn bindu::Handler>) -> Server {
    server_with(config(&[]), handler).await
}

async fn server_with(config: Config, handler: Arc<dyn bindu::Handler>) -> Server {
    let server = tokio::time::timeout(TIMEOUT, bindu::start(config, handler))
        .await
        .unwrap()
        .unwrap();
    assert!(server.local_addr().ip().is_loopback());
    let url = format!("http://{}/", server.local_addr());
    Server { server, url }
}

impl Server {
    /// `/metrics` samples: `name{labels}` → value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let addr = self.server.local_addr();
        let text = tokio::time::timeout(TIMEOUT, async {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        })
        .await
        .unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    pub async fn rpc_count(&self, method: &str, outcome: &str) -> u64 {
        let key = format!("bindu_rpc_requests_total{{method=\"{method}\",outcome=\"{outcome}\"}}");
        self.metrics().await.get(&key).copied().unwrap_or(0.0) as u64
    }

    pub async fn tasks_in(&self, state: &str) -> u64 {
        let key = format!("bindu_tasks{{state=\"{state}\"}}");
        self.metrics().await.get(&key).copied().unwrap_or(0.0) as u64
    }
}

/// One quiet `bindu-loadtest` run against `url` (bounded by [`TIMEOUT`]).
pub async fn load(url: &str, args: &[&str]) -> Report {
    let mut argv = vec!["bindu-loadtest", "--url", url, "--quiet"];
    argv.extend_from_slice(args);
    let opts = Options::parse_args(argv).unwrap();
    tokio::time::timeout(TIMEOUT, bindu_loadtest::run(opts))
        .await
        .expect("the run is bounded")
        .unwrap()
}

/// A `--scenario` run of `requests` requests at `concurrency` within 30 s, with `extra`
/// arguments.
pub async fn load_n(
    url: &str,
    scenario: &str,
    requests: &str,
    concurrency: &str,
    extra: &[&str],
) -> Report {
    let mut args = vec![
        "--scenario",
        scenario,
        "--requests",
        requests,
        "--concurrency",
        concurrency,
        "--duration",
        "30s",
    ];
    args.extend_from_slice(extra);
    load(url, &args).await
}

/// Tasks seen completed, in the window and during the drain.
pub fn finished(r: &Report) -> u64 {
    r.completed + r.completed_after_window
}
