//! The agent's identity: an Ed25519 key pair kept on disk, the DIDs derived from it, its
//! W3C DID document, and signatures over the text the agent produces.
//!
//! Webhooks are signed with a key of their own, derived from the identity key
//! ([`Identity::webhook_public_key_base58`], published in the DID document as `#webhook`
//! and in the card): results sign arbitrary caller-chosen text with the identity key (Bindu
//! compatibility), so a webhook signed with that key could be forged by sending the
//! webhook's signing bytes as a message. No result signature verifies under the webhook key.
//!
//! - `did`: `did:bindu:<author>:<name>:<agent_id>` and standard `did:key`.
//! - `keys`: create-once-then-reuse key files (PKCS#8 PEM private key, mode 0600).
//! - [`Identity`]: the loaded key pair with its DID; signs and builds the DID document.

pub mod batch;
mod did;
mod keys;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

pub use did::{agent_id, did_bindu, did_key, parse_did_key, sanitize};
#[cfg(unix)]
pub use keys::file_mode;
pub use keys::{check_permissions as check_private_file, load_or_create, KeyError};

/// Metadata key under which every text part carries the agent's signature.
pub const SIGNATURE_METADATA_KEY: &str = "did.message.signature";

/// The DID-document fragment of the webhook verification method (`<did>#webhook`).
pub const WEBHOOK_KEY_FRAGMENT: &str = "webhook";

/// HKDF-SHA256 labels of the webhook key: a new label is a new key.
const WEBHOOK_KEY_SALT: &[u8] = b"bindu/identity/v1";
const WEBHOOK_KEY_INFO: &[u8] = b"bindu webhook signing key v1";

/// The webhook signing key of the identity key `signing`: HKDF-SHA256 (salt
/// `bindu/identity/v1`, info `bindu webhook signing key v1`) of its 32-byte seed. One-way:
/// the webhook key reveals nothing of the identity key. Every process holding the identity
/// key (ingress, workers, dispatchers) derives the same one, so nothing more is stored.
pub fn webhook_key(signing: &SigningKey) -> SigningKey {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(WEBHOOK_KEY_SALT), signing.as_bytes());
    let mut seed = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8,160-byte limit: expand cannot fail.
    let _ = hk.expand(WEBHOOK_KEY_INFO, &mut seed);
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    key
}

/// The agent's key pair and DID.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    /// Signs webhooks only ([`webhook_key`]).
    webhook: SigningKey,
    pub did: String,
    pub author: String,
    pub name: String,
}

impl std::fmt::Debug for Identity {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn new(signing: SigningKey, author: &str, name: &str) -> Identity {
        let did = did_bindu(author, name, signing.verifying_key().as_bytes());
        Identity {
            webhook: webhook_key(&signing),
            signing,
            did,
            author: author.to_string(),
            name: name.to_string(),
        }
    }

    /// A 32-byte secret for `purpose` (an HKDF-SHA256 `info` label; salt
    /// `bindu/identity/v1`) derived from the identity key. One-way, like the webhook key, and
    /// the same in every process holding `private.pem`, so nothing more is stored.
    pub fn derive_secret(&self, purpose: &[u8]) -> [u8; 32] {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(WEBHOOK_KEY_SALT), self.signing.as_bytes());
        let mut secret = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(purpose, &mut secret);
        secret
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_key_base58(&self) -> String {
        key_base58(self.verifying_key().as_bytes())
    }

    pub fn agent_id(&self) -> String {
        agent_id(self.verifying_key().as_bytes())
    }

    /// The standard `did:key` of the same key.
    pub fn did_key(&self) -> String {
        did_key(self.verifying_key().as_bytes())
    }

    /// Base58 Ed25519 signature over `bytes`.
    pub fn sign_base58(&self, bytes: &[u8]) -> String {
        signature_base58(&self.signing.sign(bytes).to_bytes())
    }

    /// The public key that verifies webhooks (never results or requests).
    pub fn webhook_public_key_base58(&self) -> String {
        key_base58(self.webhook.verifying_key().as_bytes())
    }

    /// Base58 Ed25519 signature over `bytes` with the webhook key: for webhooks only.
    pub fn sign_webhook_base58(&self, bytes: &[u8]) -> String {
        signature_base58(&self.webhook.sign(bytes).to_bytes())
    }

    /// The W3C DID v1 document of this agent: the identity key authenticates the agent
    /// (`#key-1`); the webhook key (`#webhook`) is an assertion method for notifications.
    pub fn document(&self, created: &str) -> serde_json::Value {
        serde_json::json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://getbindu.com/ns/v1"],
            "id": self.did,
            "created": created,
            "authentication": [{
                "id": format!("{}#key-1", self.did),
                "type": "Ed25519VerificationKey2020",
                "controller": self.did,
                "publicKeyBase58": self.public_key_base58(),
            }],
            "assertionMethod": [{
                "id": format!("{}#{WEBHOOK_KEY_FRAGMENT}", self.did),
                "type": "Ed25519VerificationKey2020",
                "controller": self.did,
                "publicKeyBase58": self.webhook_public_key_base58(),
            }],
        })
    }
}

/// Verifies a base58 Ed25519 signature over `bytes` with a base58 public key.
pub fn verify_base58(public_key_base58: &str, bytes: &[u8], signature_base58: &str) -> bool {
    let (Some(key), Some(sig)) = (
        batch::decode_key(public_key_base58),
        batch::decode_signature(signature_base58),
    ) else {
        return false;
    };
    key.verify(bytes, &sig).is_ok()
}

/// Base58 of a 32-byte public key. Base58 is quadratic in its input: `five8`'s fixed-size
/// encoders are several times faster than the general `bs58` one, and every result and
/// webhook carries a signature.
pub fn key_base58(key: &[u8; 32]) -> String {
    let mut out = [0u8; five8::BASE58_ENCODED_32_MAX_LEN];
    let len = usize::from(five8::encode_32(key, &mut out));
    // The base58 alphabet is ASCII.
    String::from_utf8_lossy(&out[..len]).into_owned()
}

/// Base58 of a 64-byte Ed25519 signature (see [`key_base58`]).
pub fn signature_base58(signature: &[u8; 64]) -> String {
    let mut out = [0u8; five8::BASE58_ENCODED_64_MAX_LEN];
    let len = usize::from(five8::encode_64(signature, &mut out));
    String::from_utf8_lossy(&out[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    mod base58_matches_bs58 {
        use super::super::batch::{decode_key, decode_signature};
        use super::super::{key_base58, signature_base58};
        use proptest::prelude::*;

        fn with_leading_zeros<const N: usize>(mut b: [u8; N], zeros: usize) -> [u8; N] {
            b[..zeros.min(N)].fill(0);
            b
        }

        proptest! {
            // The fast fixed-size codec says exactly what the general one says, leading
            // zero bytes ('1' characters) included.
            #[test]
            fn encodings_agree(b in any::<[u8; 32]>(), s0 in any::<[u8; 32]>(), s1 in any::<[u8; 32]>(), zeros in 0usize..40) {
                let key = with_leading_zeros(b, zeros);
                prop_assert_eq!(key_base58(&key), bs58::encode(key).into_string());
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&s0);
                sig[32..].copy_from_slice(&s1);
                let sig = with_leading_zeros(sig, zeros);
                prop_assert_eq!(signature_base58(&sig), bs58::encode(sig).into_string());
            }

            // Any text, valid or not: a signature decodes exactly when bs58 decodes it to
            // 64 bytes, to the same bytes.
            #[test]
            fn signature_decoding_agrees(text in "[1-9A-HJ-NP-Za-km-z0OIl+/ ]{0,100}") {
                let general = bs58::decode(&text).into_vec().ok().filter(|v| v.len() == 64);
                let fast = decode_signature(&text).map(|s| s.to_bytes().to_vec());
                prop_assert_eq!(fast, general);
            }

            #[test]
            fn signature_round_trips(s0 in any::<[u8; 32]>(), s1 in any::<[u8; 32]>(), zeros in 0usize..70) {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&s0);
                sig[32..].copy_from_slice(&s1);
                let sig = with_leading_zeros(sig, zeros);
                let text = signature_base58(&sig);
                prop_assert_eq!(decode_signature(&text).map(|s| s.to_bytes()), Some(sig));
            }

            #[test]
            fn key_decoding_agrees(text in "[1-9A-HJ-NP-Za-km-z0OIl]{0,60}") {
                let general = bs58::decode(&text)
                    .into_vec()
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                    .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok());
                prop_assert_eq!(decode_key(&text), general);
            }
        }
    }

    #[test]
    fn signs_and_verifies_and_never_prints_the_key() {
        let id = Identity::new(
            SigningKey::from_bytes(&[7; 32]),
            "ops@example.com",
            "gateway",
        );
        let sig = id.sign_base58(b"hello");
        assert!(verify_base58(&id.public_key_base58(), b"hello", &sig));
        assert!(!verify_base58(&id.public_key_base58(), b"hellO", &sig));
        assert!(!verify_base58("not-base58-0OIl", b"hello", &sig));
        assert!(!format!("{id:?}").contains(&format!("{:?}", [7u8; 32])));
        let doc = id.document("2026-11-24T00:00:00Z");
        assert_eq!(
            doc["authentication"][0]["type"],
            "Ed25519VerificationKey2020"
        );
        assert_eq!(
            doc["authentication"][0]["publicKeyBase58"],
            id.public_key_base58()
        );
        assert!(id.did.starts_with("did:bindu:ops_at_example_com:gateway:"));
        assert_eq!(
            doc["assertionMethod"][0]["publicKeyBase58"],
            id.webhook_public_key_base58()
        );
        assert_eq!(
            doc["assertionMethod"][0]["id"],
            format!("{}#webhook", id.did)
        );
    }

    /// A signature made with the identity key (what results carry) never verifies under
    /// the webhook key, and the other way round.
    #[test]
    fn the_webhook_key_is_its_own() {
        let id = Identity::new(SigningKey::from_bytes(&[7; 32]), "a", "b");
        assert_ne!(id.webhook_public_key_base58(), id.public_key_base58());
        let bytes = b"{\"body\": \"{}\", \"did\": \"did:x\", \"timestamp\": 1}";
        let result_signature = id.sign_base58(bytes);
        assert!(!verify_base58(
            &id.webhook_public_key_base58(),
            bytes,
            &result_signature
        ));
        let webhook_signature = id.sign_webhook_base58(bytes);
        assert!(verify_base58(
            &id.webhook_public_key_base58(),
            bytes,
            &webhook_signature
        ));
        assert!(!verify_base58(
            &id.public_key_base58(),
            bytes,
            &webhook_signature
        ));
        let again = Identity::new(SigningKey::from_bytes(&[7; 32]), "a", "b");
        assert_eq!(
            again.webhook_public_key_base58(),
            id.webhook_public_key_base58(),
            "derived, so every process holding the identity key agrees"
        );
    }
}
