//! A loopback TCP proxy in front of the real Redis (`BINDU_TEST_REDIS_URL`, else
//! 127.0.0.1:6379) that can hang or restart it, for the T2 Redis tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The real Redis of the T2 tests: `BINDU_TEST_REDIS_URL`, else the local one.
pub fn redis_url() -> String {
    std::env::var("BINDU_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis URL, and a fresh namespace (`{prefix}-…`) for replicas of one agent that
/// share it.
pub fn shared_agent(prefix: &str) -> (String, String) {
    let agent = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    (redis_url(), agent)
}

pub fn redis_addr() -> String {
    let url = redis_url();
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .rsplit('@')
        .next()
        .unwrap()
        .to_string()
}

/// A loopback TCP proxy in front of the real Redis that can stop forwarding (a hung
/// server: connections stay open, nothing comes back) or cut every connection and refuse
/// new ones (a restart), then come back.
pub struct Proxy {
    pub url: String,
    hung: tokio::sync::watch::Sender<bool>,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

/// Copies `from` to `to`, holding every chunk while the proxy is hung.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hung: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hung.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start() -> Proxy {
        let target = redis_addr();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hung, _) = tokio::sync::watch::channel(false);
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let down = Arc::new(AtomicBool::new(false));
        let (hung_tx, cut_tx, flag) = (hung.clone(), cut.clone(), down.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let mut cut = cut_tx.subscribe();
                let hung = hung_tx.subscribe();
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, hung.clone()) => {}
                        _ = pump(sr, cw, hung) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            url: format!("redis://127.0.0.1:{port}"),
            hung,
            down,
            cut,
        }
    }

    pub fn hang(&self, hung: bool) {
        self.hung.send_replace(hung);
    }

    pub fn restart_begins(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restart_ends(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
