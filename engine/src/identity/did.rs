//! DID strings.

use sha2::{Digest, Sha256};

/// Bindu's identifier sanitiser: lower-case, then space → `_`, `@` → `_at_`, `.` → `_`.
pub fn sanitize(s: &str) -> String {
    s.to_lowercase()
        .replace(' ', "_")
        .replace('@', "_at_")
        .replace('.', "_")
}

/// The first 16 bytes of sha256(public key), as a UUID-shaped string.
pub fn agent_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `did:bindu:<author>:<name>:<agent_id>`.
pub fn did_bindu(author: &str, name: &str, public_key: &[u8; 32]) -> String {
    format!(
        "did:bindu:{}:{}:{}",
        sanitize(author),
        sanitize(name),
        agent_id(public_key)
    )
}

const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// Standard W3C `did:key` (multibase base58btc `z` over 0xed01 + the key).
pub fn did_key(public_key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&ED25519_MULTICODEC);
    bytes.extend_from_slice(public_key);
    format!("did:key:z{}", bs58::encode(bytes).into_string())
}

/// The Ed25519 key inside a `did:key`; `None` for anything else (including Bindu's legacy
/// form without the multicodec prefix).
pub fn parse_did_key(did: &str) -> Option<[u8; 32]> {
    let encoded = did.strip_prefix("did:key:z")?;
    let bytes = bs58::decode(encoded).into_vec().ok()?;
    if bytes.len() != 34 || bytes[..2] != ED25519_MULTICODEC {
        return None;
    }
    <[u8; 32]>::try_from(&bytes[2..]).ok()
}
