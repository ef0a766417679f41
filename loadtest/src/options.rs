//! Command-line options (also built directly by tests with [`Options::parse_args`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What each simulated client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Non-blocking `message/send`; completion is observed by polling `tasks/get`.
    Send,
    /// Blocking `message/send`: the answer is the finished task.
    SendBlocking,
    /// `message/stream`: accepted at the first event, completed at the final one.
    Stream,
    /// Non-blocking `message/send`, then `tasks/resubscribe` until the final event.
    Resubscribe,
    /// A weighted mix of the four above (`--mix`).
    Mixed,
    /// Holds `--streams` `message/stream` responses open at once and measures the server's
    /// resident memory per open stream (`--server-pid`).
    SseSoak,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Send => "send",
            Scenario::SendBlocking => "send-blocking",
            Scenario::Stream => "stream",
            Scenario::Resubscribe => "resubscribe",
            Scenario::Mixed => "mixed",
            Scenario::SseSoak => "sse-soak",
        }
    }
}

/// The A2A protocol version requests are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum A2aVersion {
    /// 0.3 (no `A2A-Version` header): `message/send`, `message/stream`, `tasks/get`.
    #[value(name = "0.3")]
    V03,
    /// 1.0 (`A2A-Version: 1.0`): `SendMessage`, `SendStreamingMessage`, `GetTask`.
    #[value(name = "1.0")]
    V10,
}

/// How 1.0 requests are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Binding {
    /// JSON-RPC: every request a `POST` to `--url`.
    Jsonrpc,
    /// A2A 1.0 HTTP+JSON: `--url` is the binding's base (e.g. http://127.0.0.1:3773/v1);
    /// `POST …/message:send`, `POST …/message:stream`, `GET …/tasks/{id}`.
    HttpJson,
}

/// `bindu-loadtest`: a black-box A2A load generator.
///
/// Targets any A2A JSON-RPC URL on this machine (loopback) unless `--allow-remote` is given.
/// Closed loop by default (`--concurrency` clients, each sending its next request when the
/// previous one is answered); `--rate` makes it open loop: requests are due on a fixed
/// schedule and latency is measured from the moment each was due, so a stalled server cannot
/// hide its queueing (no coordinated omission): requests that fell due but were never sent
/// count in the latencies up to the end of the window.
///
/// "completed" counts tasks that ended in state `completed` only; the report lists every end
/// state (failed, canceled, rejected, input-required, auth-required, ...) apart, and counts
/// failed requests in the request → completed latency up to when the failure was seen.
#[derive(Debug, Clone, Parser)]
#[command(name = "bindu-loadtest", version)]
pub struct Options {
    /// The agent's JSON-RPC URL, e.g. http://127.0.0.1:3773/ (http only).
    #[arg(long)]
    pub url: String,
    /// What each client does.
    #[arg(long, value_enum, default_value = "send")]
    pub scenario: Scenario,
    /// The A2A version requests are sent in (1.0: send, send-blocking, stream and sse-soak).
    #[arg(long, value_enum, default_value = "0.3")]
    pub a2a_version: A2aVersion,
    /// How requests are carried: JSON-RPC, or (with --a2a-version 1.0) HTTP+JSON.
    #[arg(long, value_enum, default_value = "jsonrpc")]
    pub binding: Binding,
    /// How long to offer load (e.g. 10s, 500ms, 2m); for sse-soak, how long to hold the
    /// streams open once they are all open. Default 10s when --requests is not given.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests have been issued (first-level requests: polls and
    /// resubscribes are not counted).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Connections (closed loop: concurrent clients; open loop: most requests in flight).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: requests per second offered on a fixed schedule.
    #[arg(long)]
    pub rate: Option<f64>,
    /// After the load window, how long to wait for accepted tasks to finish.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain: Duration,
    /// Longest wait for one HTTP answer (or between two stream events).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// `send`: first `tasks/get` poll of an accepted task this long after it was accepted;
    /// each further poll waits twice as long as the one before, up to 20 times this.
    #[arg(long, value_parser = parse_duration, default_value = "5ms")]
    pub poll_interval: Duration,
    /// `send`: connections used for `tasks/get` polling (default: concurrency / 4, at least 1).
    #[arg(long)]
    pub poll_connections: Option<usize>,
    /// `send`: follow only every Nth accepted task to completion (1 = every task). With N > 1
    /// the completions seen by these polls are scaled by N in completed/s (marked estimated);
    /// completions seen directly (blocking answers, stream events) count once.
    #[arg(long, default_value_t = 1)]
    pub poll_every: u64,
    /// `mixed`: weights, e.g. send=5,send-blocking=2,stream=2,resubscribe=1.
    #[arg(long, default_value = "send=5,send-blocking=2,stream=2,resubscribe=1")]
    pub mix: String,
    /// Size of each message's text part in bytes (default: the 5-byte "hello").
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// Bearer token sent with every request (also BINDU_TOKEN).
    #[arg(long, env = "BINDU_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Sign every request (X-DID, X-DID-Timestamp, X-DID-Signature) with the Ed25519 key in
    /// this directory (created when missing).
    #[arg(long)]
    pub key_dir: Option<PathBuf>,
    /// The DID requests are signed as (default: the key's did:key). Needs --key-dir.
    #[arg(long, requires = "key_dir")]
    pub did: Option<String>,
    /// sse-soak: streams to hold open at once (default: --concurrency).
    #[arg(long)]
    pub streams: Option<usize>,
    /// sse-soak: the server process whose resident memory (VmRSS) is measured.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Allow a target that is not a loopback address. Load-test only machines you run.
    #[arg(long)]
    pub allow_remote: bool,
}

impl Options {
    /// Parses arguments as the binary does (the first item is the program name).
    pub fn parse_args<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Options::try_parse_from(args)
    }

    /// The load window's length bound, if any (10 s when neither bound is given).
    pub fn window(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        }
    }

    /// The wire form of `--a2a-version` and `--binding`.
    pub fn wire(&self) -> crate::rpc::Wire {
        match (self.a2a_version, self.binding) {
            (A2aVersion::V03, _) => crate::rpc::Wire::V03,
            (A2aVersion::V10, Binding::Jsonrpc) => crate::rpc::Wire::V10,
            (A2aVersion::V10, Binding::HttpJson) => crate::rpc::Wire::V10Rest,
        }
    }

    /// Checks the combinations the parser cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.binding == Binding::HttpJson && self.a2a_version != A2aVersion::V10 {
            anyhow::bail!("--binding http-json is A2A 1.0's: add --a2a-version 1.0");
        }
        if self.a2a_version == A2aVersion::V10
            && matches!(self.scenario, Scenario::Resubscribe | Scenario::Mixed)
        {
            anyhow::bail!(
                "--a2a-version 1.0 runs the send, send-blocking, stream and sse-soak scenarios (not {})",
                self.scenario.name()
            );
        }
        if self.concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                anyhow::bail!("--rate must be a positive number of requests per second");
            }
            if self.scenario == Scenario::SseSoak {
                anyhow::bail!("--rate does not apply to sse-soak");
            }
        }
        if self.requests == Some(0) {
            anyhow::bail!("--requests must be at least 1");
        }
        if self.poll_every == 0 {
            anyhow::bail!("--poll-every must be at least 1");
        }
        if self.poll_interval.is_zero() {
            anyhow::bail!("--poll-interval must be positive");
        }
        if self.streams == Some(0) {
            anyhow::bail!("--streams must be at least 1");
        }
        if self.scenario == Scenario::Mixed {
            crate::scenario::Mix::parse(&self.mix)?;
        }
        Ok(())
    }
}

/// `250ms`, `10s`, `2m`, `1h`, or plain seconds (`10`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    if !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_documented_invocation_parses() {
        let o = Options::parse_args([
            "bindu-loadtest",
            "--url",
            "http://127.0.0.1:3773/",
            "--scenario",
            "send",
            "--duration",
            "10s",
            "--concurrency",
            "64",
            "--json",
            "out.json",
        ])
        .expect("parses");
        assert_eq!(o.scenario, Scenario::Send);
        assert_eq!(o.window(), Some(Duration::from_secs(10)));
        assert!(o.validate().is_ok());
        let o = Options::parse_args(["x", "--url", "http://127.0.0.1:1/", "--rate=-3"])
            .expect("parses");
        assert!(o.validate().is_err());
        assert!(Options::parse_args(["x", "--url", "u", "--did", "did:key:z"]).is_err());
    }

    #[test]
    fn the_a2a_version_and_binding_pick_the_wire() {
        use crate::rpc::Wire;
        let parse = |extra: &[&str]| {
            let mut args = vec!["x", "--url", "http://127.0.0.1:1/"];
            args.extend_from_slice(extra);
            Options::parse_args(args).expect("parses")
        };
        assert_eq!(parse(&[]).wire(), Wire::V03);
        assert_eq!(parse(&["--a2a-version", "1.0"]).wire(), Wire::V10);
        let rest = parse(&["--a2a-version", "1.0", "--binding", "http-json"]);
        assert_eq!(rest.wire(), Wire::V10Rest);
        assert!(rest.validate().is_ok());
        assert!(parse(&["--binding", "http-json"]).validate().is_err());
        assert!(
            parse(&["--a2a-version", "1.0", "--scenario", "resubscribe"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--a2a-version", "1.0", "--scenario", "stream"])
            .validate()
            .is_ok());
        assert!(Options::parse_args(["x", "--url", "u", "--a2a-version", "0.4"]).is_err());
    }
}
