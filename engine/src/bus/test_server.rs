//! Private bus servers for tests (`testing` with the `nats` or `redis` feature): a free
//! loopback port and a temporary directory, stopped and removed on drop. A server can be
//! stopped (killed, like a crash) and restarted on the same port and directory to test
//! outages.
//!
//! - [`NatsServer`](super::nats_server::NatsServer): `nats-server` with JetStream
//!   (`NATS_SERVER_BIN`, else the usual places, else PATH).
//! - [`RedisServer`](super::redis_server::RedisServer): `redis-server` with an append-only
//!   file fsynced on every write, so a restart keeps every acknowledged write
//!   (`REDIS_SERVER_BIN`, else the usual places, else PATH).

use std::marker::PhantomData;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// What one kind of server needs: its name, its binary and its command line.
pub trait Kind {
    /// The program's name (`nats-server`), for messages and the directory's name.
    const NAME: &'static str;
    /// The environment variable that names the binary.
    const BIN_VAR: &'static str;
    /// Where the binary usually is, before PATH.
    const USUAL: &'static [&'static str];
    /// The URL scheme clients use.
    const SCHEME: &'static str;
    /// The arguments that serve on `port` and keep the data in `dir`.
    fn args(port: u16, dir: &std::path::Path) -> Vec<String>;
}

/// A server of kind `K` for one test.
pub struct TestServer<K: Kind> {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    kind: PhantomData<K>,
}

/// `K::BIN_VAR`, else the first binary found in the usual places or on PATH.
pub fn binary<K: Kind>() -> Option<String> {
    if let Ok(b) = std::env::var(K::BIN_VAR) {
        return Some(b);
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| format!("{d}/{}", K::NAME))
        .collect::<Vec<_>>();
    K::USUAL
        .iter()
        .map(|s| s.to_string())
        .chain(on_path)
        .find(|p| std::path::Path::new(p).exists())
}

impl<K: Kind> TestServer<K> {
    /// Starts a server; panics with a clear message when its binary is missing.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let dir = std::env::temp_dir().join(format!(
            "bindu-{}-{}",
            K::NAME,
            uuid::Uuid::new_v4().simple()
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut server = TestServer {
            port,
            dir,
            child: None,
            kind: PhantomData,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", K::SCHEME, self.port)
    }

    /// (Re)starts the server on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let bin = binary::<K>().unwrap_or_else(|| {
            panic!(
                "this test needs {} (install it or set {})",
                K::NAME,
                K::BIN_VAR
            )
        });
        let child = Command::new(bin)
            .args(K::args(self.port, &self.dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", K::NAME));
        self.child = Some(child);
        wait_listening(self.port, K::NAME);
    }

    /// Kills the server (like a crash); the directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl<K: Kind> Drop for TestServer<K> {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits (up to 20 s) until something listens on 127.0.0.1:`port`; panics naming `what`
/// otherwise.
fn wait_listening(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port}");
}
