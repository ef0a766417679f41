//! The flaky memory store of the engine's test support, and an ingress served on a free
//! loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use bindu_engine::{Bus, TaskStore};
use bindu_ingress::card::{build_card, CardCapabilities};
use bindu_ingress::options::AgentConfig;
use bindu_ingress::{Ingress, IngressOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bindu_engine::store::flaky::Flaky;

/// A client for the loopback ingress (no proxy) that gives up after `timeout`.
pub fn client_within(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// An ingress on `store` and `bus` (default card and options) serving a free port of
/// 127.0.0.1 until `shutdown`: its address and the server's task.
pub async fn serve(
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
    shutdown: &CancellationToken,
) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let card = build_card(
        &AgentConfig::default(),
        &bindu_ingress::skills::Skills::default(),
        "http://127.0.0.1:1",
        &IngressOptions::default().rest_base_path,
        CardCapabilities::default(),
    );
    let ingress = Ingress::new(
        store,
        bus,
        card,
        None,
        None,
        IngressOptions::default(),
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(bindu_ingress::serve(
        listener,
        ingress.router(),
        shutdown.clone(),
    ));
    (addr, server)
}
