//! `bindu-loadtest`: a black-box A2A load generator for any A2A JSON-RPC endpoint.
//!
//! - [`options`]: the command line (scenarios, closed/open loop, bounds, credentials).
//! - [`target`]: URL parsing and the loopback-only rule (`--allow-remote` to lift it).
//! - [`http`]: one keep-alive HTTP/1.1 connection per simulated client; SSE reading.
//! - [`rpc`]: request bodies with fresh ids and the answer fields that matter.
//! - [`scenario`]: what a client does per request; the `tasks/get` poller.
//! - [`run`]: the load window, the drain and the live progress line.
//! - [`soak`]: `sse-soak`, server memory per open stream.
//! - [`stats`] and [`report`]: HDR histograms, error counts, the table and the JSON report.
//! - [`authority`]: a loopback stand-in for Ory Hydra's admin API, so signed and
//!   authenticated runs need no OAuth server (benchmarks and tests only).

pub mod authority;
pub mod http;
pub mod options;
pub mod report;
pub mod rpc;
pub mod run;
pub mod scenario;
pub mod soak;
pub mod stats;
pub mod target;

pub use options::{Options, Scenario};
pub use report::Report;
pub use run::run;

use std::path::Path;

use bindu_engine::identity::{self, Identity};

/// The caller's identity from a key directory (the key pair is created when missing).
pub fn caller_identity(dir: &Path) -> anyhow::Result<Identity> {
    let (key, _) = identity::load_or_create(dir, false)
        .map_err(|e| anyhow::anyhow!("--key-dir {}: {e}", dir.display()))?;
    Ok(Identity::new(key, "", "bindu-loadtest"))
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n")
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
