//! Negotiation ids: an accepted assessment's best skill, carried by the client to
//! `message/send` as `message.metadata.negotiationId`.
//!
//! An id holds what it stands for, so any ingress replica of the agent reads it without
//! shared state: `n1.<expiry, unix seconds>.<hex of the skill id>.<hex of a MAC>`, the MAC
//! being the first 16 bytes of HMAC-SHA256 over the rest under a key derived from the
//! agent's identity key ([`bindu_engine::identity::Identity::derive_secret`]). An id from
//! another agent, an altered one or an expired one is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `info` label of the key (a new label is a new key: every id issued before is void).
pub const KEY_PURPOSE: &[u8] = b"bindu negotiation id v1";

const PREFIX: &str = "n1";
const MAC_BYTES: usize = 16;

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("it is not a negotiation id")]
    Malformed,
    #[error("it was not issued by this agent, or was altered")]
    Forged,
    #[error("it has expired; negotiate again")]
    Expired,
}

/// Issues and checks ids.
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(..)")
    }
}

impl IdKey {
    pub fn new(secret: [u8; 32]) -> IdKey {
        IdKey(secret)
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        mac.update(body.as_bytes());
        mac
    }

    /// An id for `skill_id`, valid until `expires` (unix seconds).
    pub fn issue(&self, skill_id: &str, expires: u64) -> String {
        let body = format!("{PREFIX}.{expires}.{}", hex::encode(skill_id));
        let tag = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The skill id `id` stands for, if it is ours and not expired at `now` (unix seconds).
    pub fn verify(&self, id: &str, now: u64) -> Result<String, IdError> {
        let (body, tag) = id.rsplit_once('.').ok_or(IdError::Malformed)?;
        let mut parts = body.splitn(3, '.');
        let (Some(PREFIX), Some(expires), Some(skill)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(IdError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| IdError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| IdError::Malformed)?;
        if tag.len() != MAC_BYTES {
            return Err(IdError::Malformed);
        }
        // Constant-time comparison of the truncated tag.
        self.mac(body)
            .verify_truncated_left(&tag)
            .map_err(|_| IdError::Forged)?;
        if now > expires {
            return Err(IdError::Expired);
        }
        let skill = hex::decode(skill).map_err(|_| IdError::Malformed)?;
        String::from_utf8(skill).map_err(|_| IdError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_tampering() {
        let key = IdKey::new([7; 32]);
        let id = key.issue("pdf-processing-v1", 1000);
        assert_eq!(key.verify(&id, 999).as_deref(), Ok("pdf-processing-v1"));
        assert_eq!(key.verify(&id, 1001), Err(IdError::Expired));
        assert_eq!(IdKey::new([8; 32]).verify(&id, 999), Err(IdError::Forged));
        let other_skill = id.replace(&hex::encode("pdf-processing-v1"), &hex::encode("admin"));
        assert_eq!(key.verify(&other_skill, 999), Err(IdError::Forged));
        let later = id.replacen(".1000.", ".9999.", 1);
        assert_eq!(key.verify(&later, 999), Err(IdError::Forged));
        for bad in [
            "",
            "n1",
            "n1.x.y.z",
            "n2.1.61.00",
            "n1.1.61.zz",
            &id[..id.len() - 2],
        ] {
            assert_eq!(key.verify(bad, 0), Err(IdError::Malformed), "{bad}");
        }
    }
}
