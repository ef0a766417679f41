//! Local checks of a payment, before any network call (defence in depth: the facilitator
//! checks again, and settles).
//!
//! In order, first failure wins ([`Rejection::code`] is the x402 spec's error code):
//! 1. [`decode_header`]: at most [`MAX_HEADER_BYTES`], base64, a JSON object
//!    (`invalid_payload`).
//! 2. `x402Version` 2; 1 is refused with a reason, anything else too
//!    (`invalid_x402_version`).
//! 3. `accepted` matches one of our requirements: scheme, network, asset and `payTo`
//!    (addresses case-insensitively), amount (as a number) (`invalid_payment_requirements`,
//!    `unsupported_scheme`).
//! 4. The `exact` EVM payload is well formed: addresses, decimal values, a 32-byte nonce, a
//!    65-byte signature (`invalid_payload`).
//! 5. `authorization.to == payTo` (`…_recipient_mismatch`), `value == amount`
//!    (`…_value_mismatch`), `validAfter <= now` (`…_valid_after`), `validBefore >= now + 6`
//!    and not beyond `now + maxTimeoutSeconds + 60` (`…_valid_before`).
//! 6. The EIP-712 digest of `TransferWithAuthorization` under *our* requirement's token
//!    domain, the secp256k1 signer recovered (low `s` only, `v` ∈ {0, 1, 27, 28}) equals
//!    `authorization.from` (`invalid_exact_evm_payload_signature`).

use bindu_schemas::x402::{PaymentRequirements, X402_VERSION};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde_json::Value;
use sha3::{Digest, Keccak256};

use super::pricing::parse_address;

/// Largest payment header read (a payload is about 1 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// `validBefore` must leave at least this many seconds (the x402 SDK's buffer).
pub const VALID_BEFORE_MARGIN_SECS: u64 = 6;

/// How far past `maxTimeoutSeconds` an authorization may last (clock skew).
pub const WINDOW_SLACK_SECS: u64 = 60;

/// Why a payment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The x402 error code (`invalid_payload`, `invalid_exact_evm_payload_signature`…).
    pub code: &'static str,
    /// What is wrong, for the client.
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

pub mod codes {
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    pub const INVALID_VERSION: &str = "invalid_x402_version";
    pub const NO_MATCH: &str = "invalid_payment_requirements";
    pub const UNSUPPORTED_SCHEME: &str = "unsupported_scheme";
    pub const RECIPIENT: &str = "invalid_exact_evm_payload_recipient_mismatch";
    pub const VALUE: &str = "invalid_exact_evm_payload_authorization_value_mismatch";
    pub const VALID_AFTER: &str = "invalid_exact_evm_payload_authorization_valid_after";
    pub const VALID_BEFORE: &str = "invalid_exact_evm_payload_authorization_valid_before";
    pub const SIGNATURE: &str = "invalid_exact_evm_payload_signature";
}

/// The JSON object a payment header carries (base64, padding optional; the URL-safe
/// alphabet is accepted too).
pub fn decode_header(text: &str) -> Result<Value, Rejection> {
    use base64::Engine;
    let text = text.trim();
    if text.is_empty() {
        return Err(reject(
            codes::INVALID_PAYLOAD,
            "the payment header is empty",
        ));
    }
    if text.len() > MAX_HEADER_BYTES {
        return Err(reject(
            codes::INVALID_PAYLOAD,
            format!("the payment header is longer than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let standard = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    let bytes = standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .map_err(|_| {
            reject(
                codes::INVALID_PAYLOAD,
                "the payment header is not base64 (it carries base64 of a JSON PaymentPayload)",
            )
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(reject(
            codes::INVALID_PAYLOAD,
            "the payment header's JSON is not an object (a PaymentPayload)",
        )),
        Err(e) => Err(reject(
            codes::INVALID_PAYLOAD,
            format!("the payment header is not base64 of JSON: {e}"),
        )),
    }
}

/// An EIP-712 domain of a token contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: [u8; 20],
}

/// An EIP-3009 `TransferWithAuthorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub from: [u8; 20],
    pub to: [u8; 20],
    pub value: u128,
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: [u8; 32],
}

pub fn keccak(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

fn word_u128(n: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&n.to_be_bytes());
    w
}

fn word_address(a: &[u8; 20]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a);
    w
}

/// `hashStruct(EIP712Domain)`.
pub fn domain_separator(d: &Domain) -> [u8; 32] {
    let type_hash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
    );
    let mut enc = Vec::with_capacity(5 * 32);
    enc.extend_from_slice(&type_hash);
    enc.extend_from_slice(&keccak(d.name.as_bytes()));
    enc.extend_from_slice(&keccak(d.version.as_bytes()));
    enc.extend_from_slice(&word_u128(u128::from(d.chain_id)));
    enc.extend_from_slice(&word_address(&d.verifying_contract));
    keccak(&enc)
}

/// `hashStruct(TransferWithAuthorization)`.
pub fn struct_hash(a: &Authorization) -> [u8; 32] {
    let type_hash = keccak(b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)");
    let mut enc = Vec::with_capacity(7 * 32);
    enc.extend_from_slice(&type_hash);
    enc.extend_from_slice(&word_address(&a.from));
    enc.extend_from_slice(&word_address(&a.to));
    enc.extend_from_slice(&word_u128(a.value));
    enc.extend_from_slice(&word_u128(u128::from(a.valid_after)));
    enc.extend_from_slice(&word_u128(u128::from(a.valid_before)));
    enc.extend_from_slice(&a.nonce);
    keccak(&enc)
}

/// `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(message))`.
pub fn typed_data_digest(domain_separator: &[u8; 32], struct_hash: &[u8; 32]) -> [u8; 32] {
    let mut enc = Vec::with_capacity(66);
    enc.extend_from_slice(&[0x19, 0x01]);
    enc.extend_from_slice(domain_separator);
    enc.extend_from_slice(struct_hash);
    keccak(&enc)
}

/// The digest an EIP-3009 authorization is signed over.
pub fn authorization_digest(domain: &Domain, a: &Authorization) -> [u8; 32] {
    typed_data_digest(&domain_separator(domain), &struct_hash(a))
}

/// The Ethereum address of a public key.
pub fn address_of(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = keccak(&point.as_bytes()[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&hash[12..]);
    a
}

/// The signer of `digest` given a 65-byte `r ‖ s ‖ v` signature. High-`s` signatures
/// (malleable, refused by Ethereum since EIP-2), other lengths and other `v` are refused.
pub fn recover_signer(digest: &[u8; 32], signature: &[u8]) -> Result<[u8; 20], String> {
    if signature.len() != 65 {
        return Err(format!(
            "the signature has {} bytes; an EOA signature has 65 (r, s, v)",
            signature.len()
        ));
    }
    let v = match signature[64] {
        0 | 27 => 0,
        1 | 28 => 1,
        other => return Err(format!("the signature's v is {other}; expected 27 or 28")),
    };
    let sig = Signature::from_slice(&signature[..64])
        .map_err(|_| "the signature's r or s is out of range".to_string())?;
    if sig.normalize_s().is_some() {
        return Err("the signature has a high s value (malleable); refused".into());
    }
    let id = RecoveryId::from_byte(v).ok_or("bad recovery id")?;
    let key = VerifyingKey::recover_from_prehash(digest, &sig, id)
        .map_err(|_| "no public key recovers from this signature".to_string())?;
    Ok(address_of(&key))
}

/// `0x`-prefixed lower-case hex.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A payment that passed every local check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Which of the offered requirements it matched.
    pub requirement: usize,
    pub authorization: Authorization,
    /// `authorization.from`, as the client wrote it.
    pub payer: String,
}

impl Verified {
    /// The nonce as `0x` + 64 lower-case hex digits.
    pub fn nonce_hex(&self) -> String {
        hex0x(&self.authorization.nonce)
    }
}

fn text<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, Rejection> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| {
        reject(
            codes::INVALID_PAYLOAD,
            format!("`{what}.{key}` is missing or not a string"),
        )
    })
}

/// A decimal string (digits only) as an integer.
fn decimal<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Rejection> {
    let digits = !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit());
    let bad = || {
        reject(
            codes::INVALID_PAYLOAD,
            format!("`{what}` is {s:?}; expected a decimal integer in range"),
        )
    };
    if !digits {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

fn address(s: &str, what: &str) -> Result<[u8; 20], Rejection> {
    parse_address(s).map_err(|e| reject(codes::INVALID_PAYLOAD, format!("`{what}`: {e}")))
}

fn hex_bytes(s: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    let bad = || {
        reject(
            codes::INVALID_PAYLOAD,
            format!("`{what}` is not 0x-prefixed hex"),
        )
    };
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(bad)?;
    if h.len() > 1024 {
        return Err(bad());
    }
    hex::decode(h).map_err(|_| bad())
}

/// The domain of a requirement's token: `extra.{name, version}`, the CAIP-2 chain id and
/// the asset.
pub fn domain_of(r: &PaymentRequirements) -> Result<Domain, String> {
    let extra = r
        .extra
        .as_ref()
        .ok_or("the requirement has no `extra` domain")?;
    let field = |k: &str| {
        extra
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("the requirement's `extra.{k}` is missing"))
    };
    let chain_id = r
        .network
        .strip_prefix("eip155:")
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| format!("{:?} is not an eip155 network", r.network))?;
    Ok(Domain {
        name: field("name")?,
        version: field("version")?,
        chain_id,
        verifying_contract: parse_address(&r.asset)?,
    })
}

/// The version of a decoded payload, refusing all but v2 with a reason.
pub fn check_version(payload: &Value) -> Result<(), Rejection> {
    match payload.get("x402Version").and_then(Value::as_u64) {
        Some(X402_VERSION) => Ok(()),
        Some(1) => Err(reject(
            codes::INVALID_VERSION,
            "x402 v1 payment payloads are no longer accepted; please re-sign with v2",
        )),
        Some(n) => Err(reject(
            codes::INVALID_VERSION,
            format!("x402Version {n} is not supported; this agent speaks x402 v2"),
        )),
        None => Err(reject(
            codes::INVALID_VERSION,
            "`x402Version` is missing or not an integer; this agent speaks x402 v2",
        )),
    }
}

fn same_address(a: &str, b: &str) -> bool {
    matches!((parse_address(a), parse_address(b)), (Ok(x), Ok(y)) if x == y)
}

/// Which requirement `accepted` (the client's echo) names.
fn matching(accepted: &Value, offered: &[PaymentRequirements]) -> Result<usize, Rejection> {
    let scheme = text(accepted, "scheme", "accepted")?;
    if !offered.iter().any(|r| r.scheme == scheme) {
        return Err(reject(
            codes::UNSUPPORTED_SCHEME,
            format!("scheme {scheme:?} is not offered; this agent accepts \"exact\""),
        ));
    }
    let network = text(accepted, "network", "accepted")?;
    let asset = text(accepted, "asset", "accepted")?;
    let pay_to = text(accepted, "payTo", "accepted")?;
    let amount = text(accepted, "amount", "accepted")?;
    let mut why = "network";
    for (i, r) in offered.iter().enumerate() {
        if r.scheme != scheme || r.network != network {
            continue;
        }
        if !same_address(&r.asset, asset) {
            why = "asset";
            continue;
        }
        if !same_address(&r.pay_to, pay_to) {
            why = "payTo";
            continue;
        }
        let want: u128 = r.amount.parse().unwrap_or(0);
        if decimal::<u128>(amount, "accepted.amount").ok() != Some(want) {
            why = "amount";
            continue;
        }
        return Ok(i);
    }
    Err(reject(
        codes::NO_MATCH,
        format!("the payment's `accepted` matches none of the offered requirements (its {why} differs); pay one of `accepts` exactly"),
    ))
}

/// Every local check of a decoded payload against the offered requirements at unix time
/// `now` (see the module documentation for the order).
pub fn verify(
    payload: &Value,
    offered: &[PaymentRequirements],
    now: u64,
) -> Result<Verified, Rejection> {
    check_version(payload)?;
    let accepted = payload
        .get("accepted")
        .filter(|a| a.is_object())
        .ok_or_else(|| {
            reject(
                codes::INVALID_PAYLOAD,
                "`accepted` (the requirement paid) is missing",
            )
        })?;
    let index = matching(accepted, offered)?;
    let req = &offered[index];
    let inner = payload
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| reject(codes::INVALID_PAYLOAD, "`payload` is missing"))?;
    let auth = inner
        .get("authorization")
        .filter(|a| a.is_object())
        .ok_or_else(|| reject(codes::INVALID_PAYLOAD, "`payload.authorization` is missing"))?;
    let what = "payload.authorization";
    let from_text = text(auth, "from", what)?;
    let from = address(from_text, "payload.authorization.from")?;
    let to = address(text(auth, "to", what)?, "payload.authorization.to")?;
    let nonce_bytes = hex_bytes(text(auth, "nonce", what)?, "payload.authorization.nonce")?;
    let nonce: [u8; 32] = nonce_bytes.try_into().map_err(|_| {
        reject(
            codes::INVALID_PAYLOAD,
            "`payload.authorization.nonce` must be 32 bytes",
        )
    })?;
    let signature = hex_bytes(text(inner, "signature", "payload")?, "payload.signature")?;

    let pay_to = parse_address(&req.pay_to)
        .map_err(|e| reject(codes::NO_MATCH, format!("the offered payTo: {e}")))?;
    if to != pay_to {
        return Err(reject(
            codes::RECIPIENT,
            format!("the authorization pays {}, not {}", hex0x(&to), req.pay_to),
        ));
    }
    let value: u128 = decimal(text(auth, "value", what)?, "payload.authorization.value")
        .map_err(|_| reject(codes::VALUE, "the authorization's value is not the price"))?;
    if value.to_string() != req.amount {
        return Err(reject(
            codes::VALUE,
            format!(
                "the authorization's value is {value}; the price is {}",
                req.amount
            ),
        ));
    }
    let valid_after: u64 = decimal(text(auth, "validAfter", what)?, "validAfter")
        .map_err(|_| reject(codes::VALID_AFTER, "`validAfter` is not a time in range"))?;
    let valid_before: u64 = decimal(text(auth, "validBefore", what)?, "validBefore")
        .map_err(|_| reject(codes::VALID_BEFORE, "`validBefore` is not a time in range"))?;
    if valid_after > now {
        return Err(reject(
            codes::VALID_AFTER,
            format!("the authorization is valid only after {valid_after} (now {now})"),
        ));
    }
    if valid_before < now.saturating_add(VALID_BEFORE_MARGIN_SECS) {
        return Err(reject(
            codes::VALID_BEFORE,
            format!("the authorization expires at {valid_before}: it must be valid for at least {VALID_BEFORE_MARGIN_SECS} s more (now {now})"),
        ));
    }
    let longest = now
        .saturating_add(req.max_timeout_seconds)
        .saturating_add(WINDOW_SLACK_SECS);
    if valid_before > longest {
        return Err(reject(
            codes::VALID_BEFORE,
            format!(
                "the authorization lasts until {valid_before}, longer than maxTimeoutSeconds ({}) allows",
                req.max_timeout_seconds
            ),
        ));
    }
    let authorization = Authorization {
        from,
        to,
        value,
        valid_after,
        valid_before,
        nonce,
    };
    let domain = domain_of(req).map_err(|e| reject(codes::NO_MATCH, e))?;
    let digest = authorization_digest(&domain, &authorization);
    let signer = recover_signer(&digest, &signature).map_err(|e| reject(codes::SIGNATURE, e))?;
    if signer != from {
        return Err(reject(
            codes::SIGNATURE,
            "the signature is not authorization.from's (signed by another key, or under another token domain)",
        ));
    }
    Ok(Verified {
        requirement: index,
        authorization,
        payer: from_text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn base64_json_objects_only() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(decode_header(&b64(r#"{"x402Version":2}"#)).is_ok());
        assert!(decode_header(b64(r#"{"x402Version":2}"#).trim_end_matches('=')).is_ok());
        for bad in [
            String::new(),
            "not base64!".into(),
            b64("not json"),
            b64("[1,2]"),
            b64("42"),
            b64("\"text\""),
            "A".repeat(MAX_HEADER_BYTES + 1),
        ] {
            assert_eq!(
                decode_header(&bad).unwrap_err().code,
                codes::INVALID_PAYLOAD,
                "{bad:.40}"
            );
        }
    }

    #[test]
    fn versions_other_than_two_are_refused_with_a_reason() {
        let v = |j: &str| check_version(&serde_json::from_str(j).unwrap());
        assert!(v(r#"{"x402Version":2}"#).is_ok());
        for bad in [
            r#"{"x402Version":1}"#,
            r#"{"x402Version":3}"#,
            r#"{"x402Version":"2"}"#,
            r#"{}"#,
        ] {
            assert_eq!(v(bad).unwrap_err().code, codes::INVALID_VERSION, "{bad}");
        }
        assert!(v(r#"{"x402Version":1}"#)
            .unwrap_err()
            .message
            .contains("re-sign with v2"));
    }

    #[test]
    fn signatures_of_other_shapes_are_refused() {
        let digest = [7u8; 32];
        assert!(recover_signer(&digest, &[0u8; 64]).is_err());
        assert!(recover_signer(&digest, &[0u8; 66]).is_err());
        assert!(
            recover_signer(&digest, &[0u8; 65]).is_err(),
            "zero signature"
        );
        let mut sig = [1u8; 65];
        sig[64] = 29;
        assert!(recover_signer(&digest, &sig)
            .unwrap_err()
            .contains("v is 29"));
    }
}
