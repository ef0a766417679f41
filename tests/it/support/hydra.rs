//! The fake Ory Hydra admin API of `bindu_ingress::auth::fake_hydra` (test support).

#[allow(unused_imports)]
pub use bindu_ingress::auth::fake_hydra::*;

use bindu::engine::identity::Identity;
use bindu_schemas::signing::{signing_payload, Form};

/// Registers `id`'s public key as the key of `did` at `hydra`.
pub fn register_key(hydra: &Hydra, did: &str, id: &Identity) {
    hydra
        .keys
        .lock()
        .unwrap()
        .insert(did.to_string(), id.public_key_base58());
}

/// The DID signature headers (`x-did`, `x-did-timestamp`, `x-did-signature`) of `did` over
/// `body` at `ts`, signed by `id` in the payload `form`.
pub fn did_headers(
    id: &Identity,
    did: &str,
    body: &str,
    ts: i64,
    form: Form,
) -> Vec<(&'static str, String)> {
    let sig = id.sign_base58(signing_payload(body, did, ts, form).as_bytes());
    vec![
        ("x-did", did.to_string()),
        ("x-did-timestamp", ts.to_string()),
        ("x-did-signature", sig),
    ]
}
