//! `bindu-loadtest-authority`: the loopback Hydra stand-in for signed load tests (see
//! `bindu_loadtest::authority`). Prints `listening on <addr>` and the client DID, then serves
//! until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bindu_loadtest::authority::{serve, Grant};
use clap::Parser;

/// A stand-in for Ory Hydra's admin API that knows one token and one DID client.
#[derive(Parser)]
#[command(name = "bindu-loadtest-authority")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The token it accepts.
    #[arg(long, env = "BINDU_TOKEN", hide_env_values = true)]
    token: String,
    /// The caller's key directory (the same as bindu-loadtest --key-dir; created when missing).
    #[arg(long)]
    key_dir: PathBuf,
    /// The client id (default: the key's did:key).
    #[arg(long)]
    did: Option<String>,
    /// Scopes granted.
    #[arg(long, default_value = "agent:read agent:write")]
    scope: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("bindu-loadtest-authority: listens on loopback addresses only");
        return ExitCode::from(2);
    }
    let identity = match bindu_loadtest::caller_identity(&args.key_dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("bindu-loadtest-authority: {e:#}");
            return ExitCode::from(2);
        }
    };
    let grant = Grant {
        token: args.token,
        client_id: args.did.unwrap_or_else(|| identity.did_key()),
        public_key_base58: identity.public_key_base58(),
        scope: args.scope,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bindu-loadtest-authority: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        println!("client {}", grant.client_id);
        serve(listener, grant).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bindu-loadtest-authority: {e}");
            ExitCode::FAILURE
        }
    }
}
