//! Runs the built `bindu` binary as a separate process (black-box tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `bindu` with a clean environment (only PATH), run from the temp directory.
pub fn bindu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bindu"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c.current_dir(std::env::temp_dir());
    c
}

/// Runs `bindu` with `env` added and `args` to completion.
pub fn run_bindu(env: &[(&str, &str)], args: &[&str]) -> Output {
    bindu()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// Runs `bindu` as [`run_bindu`] does, asserts that it exits with 2 (a usage or
/// configuration error) and returns its stderr.
pub fn exits_2(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = run_bindu(env, args);
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a run of `bindu` succeeded, showing its stderr when it did not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bindu <role>` of agent `agent` on Postgres (`database_url`) and NATS (`nats_url`), on a
/// free port, with `extra` environment variables.
pub fn distributed(
    role: &str,
    agent: &str,
    database_url: &str,
    nats_url: &str,
    extra: &[(&str, &str)],
) -> Command {
    let bus = [("SCHEDULER_TYPE", "nats"), ("NATS_URL", nats_url)];
    distributed_on(role, agent, database_url, &bus, extra)
}

/// `bindu <role>` as [`distributed`] starts it, on the bus the variables `bus` select
/// (`SCHEDULER_TYPE` and its server's URL).
pub fn distributed_on(
    role: &str,
    agent: &str,
    database_url: &str,
    bus: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Command {
    let mut cmd = bindu();
    cmd.envs(bus.iter().copied());
    cmd.env("STORAGE_TYPE", "postgres")
        .env("DATABASE_URL", database_url)
        .env("BINDU_AGENT_NAME", agent)
        .env("STORAGE__NAMESPACE", agent)
        .env("BINDU_SHUTDOWN_TIMEOUT", "5")
        // Probes of workers and dispatchers on free ports (tests run many at once).
        .env("BINDU_WORKER_METRICS_ADDR", "127.0.0.1:0")
        .env("PUSH__METRICS_ADDR", "127.0.0.1:0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.args([role, "--port", "0", "--log-level", "warn"]);
    cmd
}

/// A running `bindu serve`.
pub struct Agent {
    pub child: Child,
    /// The HTTP address; for a worker or a dispatcher, its probes' address.
    pub addr: String,
}

impl Agent {
    /// Starts `cmd` (a `bindu serve --port 0 ...`) and waits until it announces its address,
    /// at most 30 s: stderr is read on a thread of its own, so a child that prints nothing
    /// cannot hold the test past the deadline.
    pub fn start(mut cmd: Command) -> Agent {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn bindu");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads every line (so the child never blocks on a full pipe) and hands the first
        // ones to the waiting test; it ends with the child's stderr.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addr = None;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            if let Some(rest) = line.strip_prefix("bindu: agent listening on ") {
                addr = rest.split_whitespace().next().map(str::to_string);
                break;
            }
            if line.starts_with("bindu: worker running")
                || line.starts_with("bindu: webhook dispatcher running")
            {
                // The probes' address (`... probes and metrics on http://ADDR)`), if any.
                addr = Some(
                    line.split_once("on http://")
                        .map(|(_, a)| a.trim_end_matches(')').to_string())
                        .unwrap_or_default(),
                );
                break;
            }
            seen.push(line);
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bindu did not announce its address within 30 s; it printed:\n{}",
                seen.join("\n")
            );
        };
        // The reader thread goes on draining; nobody needs the lines any more.
        drop(rx);
        Agent { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// SIGKILL: the process dies mid-work.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("bindu did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    /// A test that fails half-way leaves no process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One JSON-RPC call, blocking.
pub fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
            .post(url)
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            )
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    })
}
