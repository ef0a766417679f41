//! `bindu-loadtest-echo`: the baseline for the embedded target, a bare axum JSON-RPC server
//! that answers every `message/send` at once with a completed task echoing the message (no
//! store, no bus, no signing). `scripts/bench` measures it beside `bindu serve` in the same
//! run: the engine's goal is at least 60 % of this rate. Prints `listening on <addr>`, then
//! serves until killed. Default axum and tokio settings (multi-threaded runtime, system
//! allocator), as a plain axum service would have.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "bindu-loadtest-echo")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

async fn rpc(body: Bytes) -> impl IntoResponse {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let error = json!({"jsonrpc": "2.0", "id": null,
                               "error": {"code": -32700, "message": format!("parse error: {e}")}});
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                error.to_string(),
            );
        }
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let message = request["params"]["message"].clone();
    let result = json!({
        "id": format!("echo-task-{n}"),
        "contextId": format!("echo-context-{n}"),
        "kind": "task",
        "status": {"state": "completed", "timestamp": "2026-01-01T00:00:00.000Z"},
        "history": [message],
    });
    let reply = json!({"jsonrpc": "2.0", "id": request["id"].clone(), "result": result});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("bindu-loadtest-echo: listens on loopback addresses only");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bindu-loadtest-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bindu-loadtest-echo: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(e) => {
                eprintln!("bindu-loadtest-echo: {e}");
                return ExitCode::FAILURE;
            }
        }
        let app = axum::Router::new().route("/", axum::routing::post(rpc));
        match axum::serve(listener, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bindu-loadtest-echo: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
