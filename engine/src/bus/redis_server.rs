//! A private `redis-server` for tests (`testing` + `redis` features): an append-only file
//! fsynced on every write, so a restart keeps every acknowledged write; see
//! [`super::test_server`].

use super::test_server::{Kind, TestServer};

/// `redis-server` on a free port, its append-only file in the server's directory.
pub struct Redis;

impl Kind for Redis {
    const NAME: &'static str = "redis-server";
    const BIN_VAR: &'static str = "REDIS_SERVER_BIN";
    const USUAL: &'static [&'static str] =
        &["/usr/bin/redis-server", "/usr/local/bin/redis-server"];
    const SCHEME: &'static str = "redis";

    fn args(port: u16, dir: &std::path::Path) -> Vec<String> {
        let dir = dir.display().to_string();
        [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir,
        ]
        .map(String::from)
        .to_vec()
    }
}

pub type RedisServer = TestServer<Redis>;
