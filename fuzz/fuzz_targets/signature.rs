//! The DID signed-request checker's pure parts, in the order `POST /` uses them
//! (`bindu_ingress::auth::signature`): the three headers (`signature_headers`), the
//! timestamp (`parse_timestamp`), the signed bytes of the body (`signing_payload`, both
//! forms), the key and signature decoders and the verifier (`bindu_engine::identity::batch`).
//!
//! Asserts, for arbitrary header bytes, bodies, DIDs and timestamps:
//! - no panic;
//! - the headers are accepted exactly when each of the three is present once, within its
//!   length cap, visible ASCII, not blank, and the timestamp is `-?[0-9]{1,19}` within i64;
//!   what is returned is the trimmed value;
//! - the signing payload of valid UTF-8 round-trips: both forms parse back as JSON to
//!   exactly `{"body", "did", "timestamp"}`; the JavaScript form is `JSON.stringify`'s
//!   escaping (serde_json's), the Python form is that with every character from U+007F up as
//!   `\uXXXX` (pure ASCII); both are recognised as signing envelopes;
//! - a key and a signature decode only from base58 of exactly their bytes; a signature made
//!   over either form verifies, one over other bytes or for another timestamp does not.
#![no_main]

use bindu_engine::identity::batch::{decode_key, decode_signature, verify_all, VerifyJob};
use bindu_ingress::auth::signature::{
    signature_headers, MAX_DID_LEN, MAX_SIGNATURE_LEN, MAX_TIMESTAMP_LEN,
};
use bindu_schemas::signing::{is_signing_envelope, parse_timestamp, signing_payload, Form};
use ed25519_dalek::{Signer, SigningKey};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// (which header: x-did, x-did-timestamp, x-did-signature or another, its raw value)
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    did: String,
    timestamp: i64,
    timestamp_text: String,
    seed: [u8; 32],
    key_text: String,
    signature_text: String,
}

const NAMES: [(&str, usize); 3] = [
    ("x-did", MAX_DID_LEN),
    ("x-did-timestamp", MAX_TIMESTAMP_LEN),
    ("x-did-signature", MAX_SIGNATURE_LEN),
];

/// What one header should give: present once, within `cap`, visible ASCII, not blank.
fn expected_single(values: &[Vec<u8>], cap: usize) -> Option<String> {
    let [v] = values else { return None };
    if v.len() > cap || !v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?.trim_matches([' ', '\t']);
    (!s.is_empty()).then(|| s.to_string())
}

/// `-?[0-9]{1,19}` within i64.
fn expected_timestamp(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i128 = digits.bytes().fold(0, |n, d| n * 10 + i128::from(d - b'0'));
    let value = if s.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    i64::try_from(value).ok()
}

/// `JSON.stringify`'s escaping with everything from U+007F up as `\uXXXX` (Python's
/// `json.dumps` with `ensure_ascii`).
fn ensure_ascii(js: &str) -> String {
    let mut out = String::with_capacity(js.len());
    for c in js.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn check_headers(input: &Input) -> Option<(String, i64, String)> {
    let mut map = HeaderMap::new();
    let mut sent: [Vec<Vec<u8>>; 3] = Default::default();
    for (which, value) in input.headers.iter().take(8) {
        let Ok(v) = HeaderValue::from_bytes(value) else {
            continue;
        };
        match NAMES.get(usize::from(*which % 4)) {
            Some((name, _)) => {
                sent[usize::from(*which % 4)].push(value.clone());
                map.append(HeaderName::from_static(name), v);
            }
            None => {
                map.append(HeaderName::from_static("x-other"), v);
            }
        }
    }
    let got = signature_headers(&map);
    let expected = (|| {
        let did = expected_single(&sent[0], NAMES[0].1)?;
        let ts = expected_single(&sent[1], NAMES[1].1).and_then(|t| expected_timestamp(&t))?;
        let sig = expected_single(&sent[2], NAMES[2].1)?;
        Some((did, ts, sig))
    })();
    assert_eq!(got, expected, "headers {:?}", input.headers);
    got
}

fn check_payload(body: &str, did: &str, ts: i64) -> (String, String) {
    let python = signing_payload(body, did, ts, Form::Python);
    let js = signing_payload(body, did, ts, Form::Js);
    let fields = serde_json::json!({"body": body, "did": did, "timestamp": ts});
    for payload in [&python, &js] {
        assert!(is_signing_envelope(payload));
        let back: serde_json::Value =
            serde_json::from_str(payload).expect("a signing payload is JSON");
        assert_eq!(back, fields, "payload {payload:?}");
    }
    let stringify = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let expected_js = format!(
        "{{\"body\": {}, \"did\": {}, \"timestamp\": {ts}}}",
        stringify(body),
        stringify(did)
    );
    assert_eq!(js, expected_js);
    assert!(python.is_ascii());
    assert_eq!(python, ensure_ascii(&expected_js));
    (python, js)
}

fn check_verification(input: &Input, python: &str, js: &str, body: &str, did: &str, ts: i64) {
    let signer = SigningKey::from_bytes(&input.seed);
    let key = signer.verifying_key();
    let key_b58 = bs58::encode(key.to_bytes()).into_string();
    assert_eq!(decode_key(&key_b58), Some(key));
    let job = |signature, messages: Vec<Vec<u8>>| VerifyJob {
        key,
        signature,
        messages,
    };
    let forms = || vec![python.as_bytes().to_vec(), js.as_bytes().to_vec()];
    for signed in [python, js] {
        let signature = signer.sign(signed.as_bytes());
        let sig_b58 = bs58::encode(signature.to_bytes()).into_string();
        assert!(sig_b58.len() <= MAX_SIGNATURE_LEN);
        assert_eq!(decode_signature(&sig_b58), Some(signature));
        let other_ts = signing_payload(body, did, ts ^ 1, Form::Python).into_bytes();
        let other_body = signing_payload(&format!("{body} "), did, ts, Form::Python).into_bytes();
        let jobs = [
            job(signature, forms()),
            job(signature, vec![other_ts]),
            job(signature, vec![other_body]),
        ];
        assert_eq!(verify_all(jobs.iter()), [true, false, false]);
        // Alone (the batch's fallback) it is the same answer.
        assert_eq!(verify_all(jobs[..1].iter()), [true]);
    }
    // A signature from arbitrary text verifies only if it is the signer's own.
    if let Some(claimed) = decode_signature(&input.signature_text) {
        assert!(input.signature_text.len() <= MAX_SIGNATURE_LEN);
        let decoded = bs58::decode(&input.signature_text)
            .into_vec()
            .expect("decoded once");
        assert_eq!(decoded, claimed.to_bytes());
        let genuine = [signer.sign(python.as_bytes()), signer.sign(js.as_bytes())];
        if !genuine.contains(&claimed) {
            assert_eq!(verify_all([job(claimed, forms())].iter()), [false]);
        }
    }
    if let Some(k) = decode_key(&input.key_text) {
        let decoded = bs58::decode(&input.key_text)
            .into_vec()
            .expect("decoded once");
        assert_eq!(decoded, k.to_bytes());
    }
}

fuzz_target!(|input: Input| {
    assert_eq!(
        parse_timestamp(&input.timestamp_text),
        expected_timestamp(&input.timestamp_text),
        "{:?}",
        input.timestamp_text
    );
    if let Some(t) = parse_timestamp(&input.timestamp_text) {
        assert_eq!(parse_timestamp(&t.to_string()), Some(t));
    }
    // The DID and timestamp of accepted headers are what a request signs, else arbitrary.
    let (did, ts) = match check_headers(&input) {
        Some((did, ts, _)) => (did, ts),
        None => (input.did.clone(), input.timestamp),
    };
    // The checker refuses bodies that are not UTF-8 before building the payload; any bytes
    // are made a valid body here.
    let body = String::from_utf8_lossy(&input.body);
    let (python, js) = check_payload(&body, &did, ts);
    check_verification(&input, &python, &js, &body, &did, ts);
});
