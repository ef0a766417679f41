//! What [`launch`](crate::launch) returns ([`Server`]), and the parts of the engine a
//! process runs ([`Role`]).

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// A running agent: the parts of the engine its role names.
pub struct Server {
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) probe_addr: Option<SocketAddr>,
    pub(crate) base_url: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<Result<()>>,
}

impl Server {
    /// The address the HTTP server is bound to.
    ///
    /// # Panics
    /// For a worker-only process, which serves no HTTP (see [`Server::http_addr`]).
    pub fn local_addr(&self) -> SocketAddr {
        match self.local_addr {
            Some(a) => a,
            None => panic!("a worker-only process has no HTTP address"),
        }
    }

    /// The address the HTTP server is bound to, if this process serves HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Where a worker-only or dispatcher-only process serves its probes (`/health`,
    /// `/healthz`) and `/metrics` (`worker.metrics_addr`, `push.metrics_addr`), if anywhere.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe_addr
    }

    /// The base URL put in the agent card (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Begins a graceful shutdown: stop accepting, finish in-flight work within the deadline.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<()> {
        self.task.await.map_err(|e| Error::Stopped {
            part: "the server task",
            message: format!("panicked: {e}"),
        })?
    }
}

/// Which parts of the engine a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP ingress and worker pool in one process (`bindu serve`).
    Serve,
    /// HTTP ingress only (`bindu ingress`); workers run elsewhere.
    Ingress,
    /// Worker pool only (`bindu worker`).
    Worker,
    /// Webhook dispatcher only (`bindu dispatcher`).
    Dispatcher,
}

impl Role {
    /// The subcommand that runs this role.
    pub fn command(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Ingress => "ingress",
            Role::Worker => "worker",
            Role::Dispatcher => "dispatcher",
        }
    }

    pub(crate) fn serves_http(self) -> bool {
        matches!(self, Role::Serve | Role::Ingress)
    }

    pub(crate) fn runs_workers(self) -> bool {
        matches!(self, Role::Serve | Role::Worker)
    }
}
