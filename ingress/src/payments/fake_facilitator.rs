//! A fake x402 facilitator on loopback, speaking the real JSON of `POST /verify`,
//! `POST /settle` and `GET /supported` (x402 v2). `/verify` checks the payment by signature
//! recovery (the same local checks as the edge, against the requirements it is sent), and
//! `/settle` refuses a nonce it already settled (`invalid_transaction_state`), as the chain
//! would. Knobs choose a failure mode per route: an invalid answer, HTTP 500, a delay
//! longer than the client's timeout, a settlement that lands but answers too late, or a
//! settlement that fails.
//!
//! Test support (feature `testing`): used by the project's tests, never by the server.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bindu_schemas::x402::{FacilitatorRequest, SettleResponse, VerifyResponse};
use serde_json::json;

/// How a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// As a facilitator that checks and settles.
    #[default]
    Honest,
    /// `/verify`: `isValid: false` (`insufficient_funds`); `/settle`: `success: false`.
    Refuse,
    /// HTTP 500.
    Broken,
    /// Waits `delay_ms` first (longer than the client's timeout, in tests).
    Slow,
    /// `/settle`: the transfer lands at once, the answer comes `delay_ms` later (after the
    /// client stopped waiting, or was killed): an outcome the caller cannot know.
    Late,
}

#[derive(Default)]
pub struct FakeFacilitator {
    pub verify_mode: Mutex<Mode>,
    pub settle_mode: Mutex<Mode>,
    /// How long a `Slow` route waits, in milliseconds.
    pub delay_ms: AtomicU64,
    pub verifies: AtomicUsize,
    pub settles: AtomicUsize,
    /// Nonces settled on the fake chain (lower-case hex).
    pub settled: Mutex<HashSet<String>>,
}

impl FakeFacilitator {
    pub fn set_verify(&self, mode: Mode) {
        *self.verify_mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn set_settle(&self, mode: Mode) {
        *self.settle_mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn settled_count(&self) -> usize {
        self.settled.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn mode(&self, of: &Mutex<Mode>) -> Option<Response> {
        let mode = *of.lock().unwrap_or_else(|e| e.into_inner());
        match mode {
            Mode::Broken => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "facilitator exploded").into_response())
            }
            Mode::Slow => {
                let ms = self.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                None
            }
            _ => None,
        }
    }
}

fn now() -> u64 {
    u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0)
}

fn nonce_of(req: &FacilitatorRequest) -> String {
    req.payment_payload["payload"]["authorization"]["nonce"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

async fn verify(
    State(f): State<Arc<FakeFacilitator>>,
    Json(req): Json<FacilitatorRequest>,
) -> Response {
    f.verifies.fetch_add(1, Ordering::SeqCst);
    if let Some(resp) = f.mode(&f.verify_mode).await {
        return resp;
    }
    if *f.verify_mode.lock().unwrap_or_else(|e| e.into_inner()) == Mode::Refuse {
        return Json(VerifyResponse {
            is_valid: false,
            invalid_reason: Some("insufficient_funds".into()),
            invalid_message: None,
            payer: None,
        })
        .into_response();
    }
    let answer = match bindu_engine::x402::verify::verify(
        &req.payment_payload,
        std::slice::from_ref(&req.payment_requirements),
        now(),
    ) {
        Ok(v)
            if f.settled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&v.nonce_hex()) =>
        {
            VerifyResponse {
                is_valid: false,
                invalid_reason: Some("invalid_transaction_state".into()),
                invalid_message: Some("the authorization's nonce is already used".into()),
                payer: Some(v.payer),
            }
        }
        Ok(v) => VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(v.payer),
        },
        Err(r) => VerifyResponse {
            is_valid: false,
            invalid_reason: Some(r.code.into()),
            invalid_message: Some(r.message),
            payer: None,
        },
    };
    Json(answer).into_response()
}

async fn settle(
    State(f): State<Arc<FakeFacilitator>>,
    Json(req): Json<FacilitatorRequest>,
) -> Response {
    f.settles.fetch_add(1, Ordering::SeqCst);
    if let Some(resp) = f.mode(&f.settle_mode).await {
        return resp;
    }
    let network = req.payment_requirements.network.clone();
    let payer = req.payment_payload["payload"]["authorization"]["from"]
        .as_str()
        .map(str::to_string);
    let failed = |reason: &str| {
        Json(SettleResponse {
            success: false,
            error_reason: Some(reason.into()),
            payer: payer.clone(),
            transaction: String::new(),
            network: network.clone(),
            amount: None,
        })
        .into_response()
    };
    if *f.settle_mode.lock().unwrap_or_else(|e| e.into_inner()) == Mode::Refuse {
        return failed("insufficient_funds");
    }
    if let Err(r) = bindu_engine::x402::verify::verify(
        &req.payment_payload,
        std::slice::from_ref(&req.payment_requirements),
        now(),
    ) {
        return failed(r.code);
    }
    let nonce = nonce_of(&req);
    let late = *f.settle_mode.lock().unwrap_or_else(|e| e.into_inner()) == Mode::Late;
    let fresh = f
        .settled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(nonce.clone());
    if late {
        let ms = f.delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if !fresh {
        return failed("invalid_transaction_state");
    }
    let tx = format!(
        "0x{}",
        bindu_engine::x402::verify::keccak(nonce.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Json(SettleResponse {
        success: true,
        error_reason: None,
        payer,
        transaction: tx,
        network,
        amount: Some(req.payment_requirements.amount.clone()),
    })
    .into_response()
}

async fn supported() -> Json<serde_json::Value> {
    Json(json!({
        "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
        "extensions": [],
        "signers": {"eip155:*": ["0x0000000000000000000000000000000000000001"]},
    }))
}

/// Serves the fake on a free loopback port; the base URL (no trailing slash) and its state.
pub async fn start() -> std::io::Result<(String, Arc<FakeFacilitator>)> {
    let state = Arc::new(FakeFacilitator::default());
    let app = Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), state))
}
