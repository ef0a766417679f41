//! A private `nats-server` with JetStream for tests (`testing` + `nats` features): a free
//! loopback port and a temporary store directory, stopped and removed on drop. It can be
//! stopped and restarted on the same port and store to test outages.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> String {
    if let Ok(b) = std::env::var("NATS_SERVER_BIN") {
        return b;
    }
    for candidate in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    "nats-server".to_string()
}

impl NatsServer {
    /// Starts a server; panics with a clear message when `nats-server` is missing.
    pub fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let dir =
            std::env::temp_dir().join(format!("bindu-nats-{}", uuid::Uuid::new_v4().simple()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut server = NatsServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store directory.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs nats-server (set NATS_SERVER_BIN): {e}"));
        self.child = Some(child);
        super::wait_listening(self.port, "nats-server");
    }

    /// Kills the server (like a crash); the store directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
