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
