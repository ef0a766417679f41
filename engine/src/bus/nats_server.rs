//! A private `nats-server` with JetStream for tests (`testing` + `nats` features); see
//! [`super::test_server`].

use super::test_server::{Kind, TestServer};

/// `nats-server -js` on a free port, its store in the server's directory.
pub struct Nats;

impl Kind for Nats {
    const NAME: &'static str = "nats-server";
    const BIN_VAR: &'static str = "NATS_SERVER_BIN";
    const USUAL: &'static [&'static str] = &[
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ];
    const SCHEME: &'static str = "nats";

    fn args(port: u16, dir: &std::path::Path) -> Vec<String> {
        let dir = dir.display().to_string();
        [
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            &dir,
        ]
        .map(String::from)
        .to_vec()
    }
}

pub type NatsServer = TestServer<Nats>;
