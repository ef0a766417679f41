//! The shared golden vectors (`../shared/vectors/`, found beside this checkout or through
//! `BINDU_SHARED_DIR`): every DID identifier case and the artifact signature.

use std::path::PathBuf;

use bindu_engine::identity::{
    self, agent_id, did_bindu, did_key, parse_did_key, sanitize, Identity,
};
use ed25519_dalek::SigningKey;
use serde_json::Value;

/// The shared vectors (`../shared/vectors/` beside the checkout, or `$BINDU_SHARED_DIR`);
/// the vendored copy in `tests/vectors/` must equal them, and stands in only where no shared
/// directory exists.
pub fn vectors(name: &str) -> Value {
    let vendored = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    let vendored_text = std::fs::read_to_string(&vendored)
        .unwrap_or_else(|e| panic!("{}: {e}", vendored.display()));
    let shared = std::env::var_os("BINDU_SHARED_DIR")
        .map(|d| PathBuf::from(d).join("vectors").join(name))
        .or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/vectors").join(name))
                .find(|p| p.is_file())
        });
    let text = match shared {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                text,
                vendored_text,
                "tests/vectors/{name} differs from {}: re-copy it",
                path.display()
            );
            text
        }
        None => vendored_text,
    };
    serde_json::from_str(&text).expect("JSON")
}

fn key(b58: &str) -> [u8; 32] {
    bs58::decode(b58)
        .into_vec()
        .expect("base58")
        .try_into()
        .expect("32 bytes")
}

fn seed(hex: &str) -> SigningKey {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    SigningKey::from_bytes(&bytes.try_into().expect("32-byte seed"))
}

#[test]
fn every_did_identifier_vector() {
    let v = vectors("did-identifiers.json");
    for case in v["bindu"].as_array().expect("bindu cases") {
        let public = key(case["public_key_base58"].as_str().unwrap());
        if let Some(s) = case["seed_hex"].as_str() {
            assert_eq!(
                seed(s).verifying_key().to_bytes(),
                public,
                "seed → public key"
            );
        }
        if let Some(prefix) = case["sha256_prefix_hex"].as_str() {
            assert_eq!(agent_id(&public).replace('-', ""), prefix);
        }
        let did = did_bindu(
            case["author"].as_str().unwrap(),
            case["name"].as_str().unwrap(),
            &public,
        );
        assert_eq!(did, case["did"].as_str().unwrap());
    }
    for case in v["sanitise"].as_array().expect("sanitise cases") {
        assert_eq!(
            sanitize(case["in"].as_str().unwrap()),
            case["out"].as_str().unwrap()
        );
    }
    for case in v["did_key"].as_array().expect("did:key cases") {
        let mut s = [0u8; 32];
        s[31] = u8::from_str_radix(case["seed_last_byte"].as_str().unwrap(), 16).unwrap();
        let public = SigningKey::from_bytes(&s).verifying_key().to_bytes();
        assert_eq!(
            bs58::encode(public).into_string(),
            case["public_key_base58"].as_str().unwrap()
        );
        assert_eq!(did_key(&public), case["did"].as_str().unwrap());
        assert_eq!(parse_did_key(case["did"].as_str().unwrap()), Some(public));
        assert_eq!(agent_id(&public), case["agent_id"].as_str().unwrap());
    }
    let negative = v["did_key_negative"].as_str().unwrap();
    let legacy = negative.split_whitespace().next().unwrap();
    assert_eq!(parse_did_key(legacy), None, "{negative}");
}

#[test]
fn the_artifact_signature_vector() {
    let v = vectors("did-request-signing.json");
    let a = &v["artifact_signature"];
    let public = a["public_key_base58"].as_str().unwrap();
    let text = a["text"].as_str().unwrap();
    let sig = a["signature"].as_str().unwrap();
    assert!(identity::verify_base58(public, text.as_bytes(), sig));
    assert!(
        !identity::verify_base58(public, format!("{text}X").as_bytes(), sig),
        "negative case"
    );
    // Our own signatures use the same scheme and verify with the DID document's key.
    let k = &v["key"];
    let id = Identity::new(
        seed(k["seed_hex"].as_str().unwrap()),
        "ops@example.com",
        "gateway",
    );
    assert_eq!(
        id.public_key_base58(),
        k["public_key_base58"].as_str().unwrap()
    );
    let doc = id.document("2026-11-24T00:00:00Z");
    let doc_key = doc["authentication"][0]["publicKeyBase58"]
        .as_str()
        .unwrap();
    assert!(identity::verify_base58(
        doc_key,
        text.as_bytes(),
        &id.sign_base58(text.as_bytes())
    ));
}

/// `id` signs the `form` payload of case `name` as `sig`, and `public` verifies it.
fn signs_as(id: &Identity, public: &str, payload: &str, sig: &str, name: &str, form: &str) {
    assert_eq!(
        id.sign_base58(payload.as_bytes()),
        sig,
        "{name}: {form} signature"
    );
    assert!(
        identity::verify_base58(public, payload.as_bytes(), sig),
        "{name}"
    );
}

#[test]
fn every_request_signing_vector() {
    use bindu_schemas::signing::{signing_payload, Form};
    let v = vectors("did-request-signing.json");
    let k = &v["key"];
    let signer = seed(k["seed_hex"].as_str().unwrap());
    let public = k["public_key_base58"].as_str().unwrap();
    assert_eq!(
        bs58::encode(signer.verifying_key().to_bytes()).into_string(),
        public
    );
    let id = Identity::new(signer, "t", "t");
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let hex = case["body_hex"].as_str().unwrap();
        let body: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let body = String::from_utf8(body).unwrap();
        let did = case["did"].as_str().unwrap();
        let t = case["timestamp"].as_i64().unwrap();
        let python = signing_payload(&body, did, t, Form::Python);
        assert_eq!(
            python,
            case["python_payload"].as_str().unwrap(),
            "{name}: python payload"
        );
        let sig = case["python_signature"].as_str().unwrap();
        signs_as(&id, public, &python, sig, name, "python");
        if let Some(hex) = case["signature_hex"].as_str() {
            let raw = bs58::decode(sig).into_vec().unwrap();
            let as_hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(as_hex, hex, "{name}: signature bytes");
        }
        if let Some(js_sig) = case["js_signature"].as_str() {
            let js = signing_payload(&body, did, t, Form::Js);
            signs_as(&id, public, &js, js_sig, name, "js");
        }
    }
}

/// The webhook key (derived from the identity key) and a webhook signature; the identity
/// key's signature over the same bytes (what a result can carry) is not a webhook signature.
#[test]
fn the_webhook_signing_vector() {
    use bindu_schemas::signing::{signing_payload, Form};
    let v = vectors("webhook-signing.json");
    let signer = seed(v["identity_key"]["seed_hex"].as_str().unwrap());
    let derived = identity::webhook_key(&signer);
    let derived_hex: String = derived
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(derived_hex, v["webhook_key"]["seed_hex"].as_str().unwrap());
    let id = Identity::new(signer, "t", "t");
    assert_eq!(
        id.public_key_base58(),
        v["identity_key"]["public_key_base58"].as_str().unwrap()
    );
    let webhook_public = v["webhook_key"]["public_key_base58"].as_str().unwrap();
    assert_eq!(id.webhook_public_key_base58(), webhook_public);
    let case = &v["case"];
    let payload = signing_payload(
        case["body"].as_str().unwrap(),
        case["did"].as_str().unwrap(),
        case["timestamp"].as_i64().unwrap(),
        Form::Python,
    );
    assert_eq!(payload, case["python_payload"].as_str().unwrap());
    let sig = case["signature"].as_str().unwrap();
    assert_eq!(id.sign_webhook_base58(payload.as_bytes()), sig);
    assert!(identity::verify_base58(
        webhook_public,
        payload.as_bytes(),
        sig
    ));
    let forged = v["negative"]["identity_signature"].as_str().unwrap();
    assert_eq!(id.sign_base58(payload.as_bytes()), forged);
    assert!(!identity::verify_base58(
        webhook_public,
        payload.as_bytes(),
        forged
    ));
}
