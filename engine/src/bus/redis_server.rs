//! A private `redis-server` for tests (`testing` + `redis` features): a free loopback port
//! and a temporary directory with an append-only file fsynced on every write (so a restart
//! keeps every acknowledged write), stopped and removed on drop. It can be stopped (killed,
//! like a crash) and restarted on the same port and directory to test outages.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// `REDIS_SERVER_BIN`, else the first `redis-server` found in the usual places or on PATH.
pub fn binary() -> Option<String> {
    if let Ok(b) = std::env::var("REDIS_SERVER_BIN") {
        return Some(b);
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| format!("{d}/redis-server"))
        .collect::<Vec<_>>();
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(|s| s.to_string())
        .chain(on_path)
        .find(|p| std::path::Path::new(p).exists())
}

impl RedisServer {
    /// Starts a server; panics with a clear message when `redis-server` is missing.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let dir =
            std::env::temp_dir().join(format!("bindu-redis-{}", uuid::Uuid::new_v4().simple()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let bin = binary().unwrap_or_else(|| {
            panic!("this test needs redis-server (install it or set REDIS_SERVER_BIN)")
        });
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        super::wait_listening(self.port, "redis-server");
    }

    /// Kills the server (like a crash); the directory (its append-only file) stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
