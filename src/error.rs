//! The library's error: what an embedder can branch on when an agent cannot start or stops.

use bindu_engine::config::ConfigError;

/// Why an agent could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting cannot be used; the error names its key and where it came from.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A separate ingress, worker or dispatcher process needs shared backends.
    #[error("`bindu {role}` runs beside other processes, but {why}")]
    NotDistributed { role: &'static str, why: String },
    /// The builder was given no handler, or a worker role none.
    #[error("{0}")]
    NoHandler(&'static str),
    /// The built-in handler could not be set up (a missing program, no model).
    #[error(transparent)]
    Handler(#[from] bindu_workers::options::HandlerSetupError),
    /// The agent's key pair could not be read or created.
    #[error("agent identity (BINDU_KEY_DIR): {0}")]
    Identity(String),
    /// A backend (task store, bus, dead letters, Hydra, Redis) is unreachable or refused
    /// its set-up; `what` names it with its setting.
    #[error("{what}: {message}")]
    Backend { what: &'static str, message: String },
    /// The HTTP server could not listen, or TLS could not be set up.
    #[error("{what}: {source}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS files (`MTLS__*`) are missing or invalid.
    #[error("MTLS__ENABLED=true: {0}")]
    Tls(String),
    /// The agent card could not be composed (the extended card's file).
    #[error("{0}")]
    Card(String),
    /// A running part (HTTP server, worker pool, webhook dispatcher) failed or panicked.
    #[error("{part} {message}")]
    Stopped { part: &'static str, message: String },
}

impl Error {
    /// A backend error from anything printable.
    pub(crate) fn backend(what: &'static str, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            what,
            message: e.to_string(),
        }
    }
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
