//! Fresh databases for tests that need a real Postgres (`testing` feature).
//!
//! The server comes from `BINDU_TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`.

use sqlx::Connection;

use super::{redact_url, PostgresOptions, PostgresStore};

pub fn admin_url() -> String {
    std::env::var("BINDU_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped with this value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Panics with a clear message when no server is reachable.
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("bindu_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("this test needs Postgres at {}: {e}", redact_url(&admin)));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        let (without_query, query) = match admin.split_once('?') {
            Some((a, q)) => (a.to_string(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let base = without_query
            .rsplit_once('/')
            .map_or(without_query.as_str(), |(b, _)| b)
            .to_string();
        TestDb {
            url: format!("{base}/{name}{query}"),
            name,
        }
    }

    pub fn options(&self, agent: &str) -> PostgresOptions {
        let mut o = PostgresOptions::new(&self.url, agent);
        o.pool_size = 4;
        o
    }

    pub async fn store(&self, agent: &str) -> PostgresStore {
        match PostgresStore::connect(self.options(agent)).await {
            Ok(s) => s,
            Err(e) => panic!("connect to the test database: {e}"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Best effort, on a thread of its own: Drop cannot be async.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A loopback TCP proxy in front of the real Postgres that can cut every connection and
/// refuse new ones, like a database restart, then come back.
pub struct OutageProxy {
    pub port: u16,
    /// The test database's URL with the proxy as its host and port.
    pub url: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    /// Connections refused while down: each is an attempt to reach the database.
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl OutageProxy {
    /// A proxy in front of the server `database_url` names.
    pub async fn start(database_url: &str) -> OutageProxy {
        let parsed: sqlx::postgres::PgConnectOptions =
            database_url.parse().expect("a Postgres URL");
        let host = match parsed.get_host() {
            h if h.starts_with('/') => "127.0.0.1".to_string(),
            h => h.to_string(),
        };
        let target = tokio::net::lookup_host((host.as_str(), parsed.get_port()))
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address");
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (flag, cuts, refusals) = (down.clone(), cut.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    refusals.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        let (before_host, after) = database_url.split_once('@').expect("a URL with a user");
        let rest = after.split_once('/').map_or("", |(_, r)| r);
        let url = format!("{before_host}@127.0.0.1:{port}/{rest}");
        OutageProxy {
            port,
            url,
            down,
            cut,
            refused,
        }
    }

    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most 10 s) until the proxy refused more than `n` connections.
    pub async fn refuses_more_than(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.refused() <= n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection attempt reached the proxy while it was down"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn go_down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn come_back(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
