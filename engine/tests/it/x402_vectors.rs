//! The x402 golden vectors (`x402-eip3009.json`): EIP-712 digests, signer recovery, the x402
//! spec's payment (and its negatives), signing with the local-development key, the
//! `PAYMENT-RESPONSE` examples and the pricing example; then every local check, one
//! hostile payment at a time.

use base64::Engine;
use bindu_engine::x402::pricing::{parse_address, PriceOption, Pricing, X402Config};
use bindu_engine::x402::verify::{
    self, authorization_digest, codes, domain_separator, hex0x, keccak, recover_signer,
    struct_hash, typed_data_digest, Authorization, Domain,
};
use bindu_schemas::x402::{PaymentRequirements, SettleResponse};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};

use crate::vectors::vectors;

fn bytes32(h: &str) -> [u8; 32] {
    hex::decode(h.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap()
}

fn sig(h: &str) -> Vec<u8> {
    hex::decode(h.trim_start_matches("0x")).unwrap()
}

fn domain(d: &Value) -> Domain {
    Domain {
        name: d["name"].as_str().unwrap().into(),
        version: d["version"].as_str().unwrap().into(),
        chain_id: d["chainId"].as_u64().unwrap(),
        verifying_contract: parse_address(d["verifyingContract"].as_str().unwrap()).unwrap(),
    }
}

fn authorization(a: &Value) -> Authorization {
    let s = |k: &str| a[k].as_str().unwrap();
    Authorization {
        from: parse_address(s("from")).unwrap(),
        to: parse_address(s("to")).unwrap(),
        value: s("value").parse().unwrap(),
        valid_after: s("validAfter").parse().unwrap(),
        valid_before: s("validBefore").parse().unwrap(),
        nonce: bytes32(s("nonce")),
    }
}

#[test]
fn the_eip712_mail_example_hashes_and_recovers() {
    let v = &vectors("x402-eip3009.json")["eip712_mail_example"];
    let d = domain(&v["domain"]);
    assert_eq!(hex0x(&domain_separator(&d)), v["domain_separator"]);
    // Mail(Person from,Person to,string contents)Person(string name,address wallet)
    let person_type = keccak(b"Person(string name,address wallet)");
    let mail_type =
        keccak(b"Mail(Person from,Person to,string contents)Person(string name,address wallet)");
    assert_eq!(hex0x(&mail_type), v["mail_type_hash"]);
    let person = |p: &Value| {
        let mut enc = person_type.to_vec();
        enc.extend_from_slice(&keccak(p["name"].as_str().unwrap().as_bytes()));
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&parse_address(p["wallet"].as_str().unwrap()).unwrap());
        enc.extend_from_slice(&w);
        keccak(&enc)
    };
    let m = &v["message"];
    let mut enc = mail_type.to_vec();
    enc.extend_from_slice(&person(&m["from"]));
    enc.extend_from_slice(&person(&m["to"]));
    enc.extend_from_slice(&keccak(m["contents"].as_str().unwrap().as_bytes()));
    let hash_struct = keccak(&enc);
    assert_eq!(hex0x(&hash_struct), v["hash_struct"]);
    let digest = typed_data_digest(&domain_separator(&d), &hash_struct);
    assert_eq!(hex0x(&digest), v["digest"]);
    let signer = recover_signer(&digest, &sig(v["signature"].as_str().unwrap())).unwrap();
    assert_eq!(hex0x(&signer), v["signer"]);
}

#[test]
fn the_x402_spec_authorization_recovers_its_payer_and_not_under_another_domain() {
    let v = &vectors("x402-eip3009.json")["x402_spec_example"];
    let d = domain(&v["domain"]);
    assert_eq!(hex0x(&domain_separator(&d)), v["domain_separator"]);
    let a = authorization(&v["authorization"]);
    let digest = authorization_digest(&d, &a);
    assert_eq!(hex0x(&digest), v["digest"]);
    let signature = sig(v["signature"].as_str().unwrap());
    let signer = recover_signer(&digest, &signature).unwrap();
    assert_eq!(
        signer,
        parse_address(v["recovers"].as_str().unwrap()).unwrap()
    );

    let neg = &v["negative_wrong_domain_name"];
    let wrong = Domain {
        name: neg["name"].as_str().unwrap().into(),
        ..d
    };
    assert_eq!(hex0x(&domain_separator(&wrong)), neg["domain_separator"]);
    let digest = authorization_digest(&wrong, &a);
    assert_eq!(hex0x(&digest), neg["digest"]);
    let signer = recover_signer(&digest, &signature).unwrap();
    assert_eq!(hex0x(&signer), neg["recovers"]);
    assert_ne!(signer, a.from, "{}", neg["expect"]);
}

#[test]
fn the_local_development_key_signs_the_vector_deterministically() {
    let v = vectors("x402-eip3009.json");
    let spec = &v["x402_spec_example"];
    let dev = &v["local_dev_key_example"];
    let key = SigningKey::from_slice(&bytes32(dev["private_key"].as_str().unwrap())).unwrap();
    assert_eq!(
        verify::address_of(key.verifying_key()),
        parse_address(dev["address"].as_str().unwrap()).unwrap()
    );
    let mut a = authorization(&spec["authorization"]);
    a.from = parse_address(dev["address"].as_str().unwrap()).unwrap();
    assert_eq!(hex0x(&struct_hash(&a)), dev["struct_hash"]);
    let digest = authorization_digest(&domain(&spec["domain"]), &a);
    assert_eq!(hex0x(&digest), dev["digest"]);
    let (s, id) = key.sign_prehash_recoverable(&digest).unwrap();
    let mut signature = s.to_bytes().to_vec();
    signature.push(27 + id.to_byte());
    assert_eq!(hex0x(&signature), dev["signature_rfc6979"]);
}

#[test]
fn payment_response_examples_decode() {
    let v = &vectors("x402-eip3009.json")["payment_response_header_examples"];
    let decode = |k: &str| -> SettleResponse {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v[k].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let ok = decode("success_base64");
    assert!(ok.success);
    assert_eq!(ok.network, "eip155:84532");
    assert_eq!(
        ok.payer.as_deref(),
        Some("0x857b06519E91e3A54538791bDbb0E22373e36b66")
    );
    let failed = decode("failure_base64");
    assert!(!failed.success);
    assert_eq!(failed.error_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(failed.transaction, "");
    // What we send back is the same JSON, base64.
    let again = bindu_engine::x402::encode_header(&serde_json::to_vec(&ok).unwrap());
    let back: SettleResponse = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(again)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(back, ok);
}

#[test]
fn the_pricing_example_makes_its_accepts_entry() {
    let v = &vectors("x402-eip3009.json")["pricing_example"];
    let c = &v["config"];
    let option = PriceOption::usdc(c["amount"].as_str().unwrap())
        .on(c["network"].as_str().unwrap())
        .pay_to(c["pay_to_address"].as_str().unwrap());
    let config = X402Config {
        max_timeout_seconds: 60,
        ..X402Config::default()
    };
    let pricing = Pricing::new(&[option], &config).unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&pricing.accepts[0]).unwrap(),
        v["accepts0"]
    );
}

/// The spec's payment as a client sends it, with our requirement for it.
fn spec_payment() -> (Value, PaymentRequirements, u64) {
    let v = &vectors("x402-eip3009.json")["x402_spec_example"];
    let d = &v["domain"];
    let req = PaymentRequirements {
        scheme: "exact".into(),
        network: format!("eip155:{}", d["chainId"]),
        amount: v["authorization"]["value"].as_str().unwrap().into(),
        asset: d["verifyingContract"].as_str().unwrap().into(),
        pay_to: v["authorization"]["to"].as_str().unwrap().into(),
        max_timeout_seconds: 60,
        extra: Some(
            json!({"name": d["name"], "version": d["version"]})
                .as_object()
                .unwrap()
                .clone(),
        ),
    };
    let payload = json!({
        "x402Version": 2,
        "accepted": serde_json::to_value(&req).unwrap(),
        "payload": {"signature": v["signature"], "authorization": v["authorization"]},
    });
    (payload, req, v["now_for_tests"].as_u64().unwrap())
}

#[test]
fn the_spec_payment_passes_every_local_check() {
    let (payload, req, now) = spec_payment();
    let header = bindu_engine::x402::encode_header(&serde_json::to_vec(&payload).unwrap());
    let decoded = verify::decode_header(&header).unwrap();
    let ok = verify::verify(&decoded, std::slice::from_ref(&req), now).unwrap();
    assert_eq!(ok.requirement, 0);
    assert_eq!(ok.payer, "0x857b06519E91e3A54538791bDbb0E22373e36b66");
    assert_eq!(
        ok.nonce_hex(),
        "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
    );
    // `payTo` and the asset compare case-insensitively; the match picks the right option.
    let mut lower = payload.clone();
    lower["accepted"]["payTo"] = json!(req.pay_to.to_lowercase());
    lower["accepted"]["asset"] = json!(req.asset.to_uppercase().replace("0X", "0x"));
    let other = PaymentRequirements {
        network: "eip155:8453".into(),
        ..req.clone()
    };
    let ok = verify::verify(&lower, &[other, req], now).unwrap();
    assert_eq!(ok.requirement, 1);
}

/// Hostile payments (reference §8, items 20-23): each refused locally with its code.
#[test]
fn hostile_payments_are_refused_with_their_code() {
    let (payload, req, now) = spec_payment();
    let offered = std::slice::from_ref(&req);
    let refused = |p: &Value, at: u64| verify::verify(p, offered, at).unwrap_err().code;
    let with = |path: &[&str], value: Value| {
        let mut p = payload.clone();
        let mut at = &mut p;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = value;
        p
    };
    // 20: versions.
    assert_eq!(
        refused(&with(&["x402Version"], json!(1)), now),
        codes::INVALID_VERSION
    );
    assert_eq!(
        refused(&with(&["x402Version"], json!(3)), now),
        codes::INVALID_VERSION
    );
    // 21: requirement mismatches.
    assert_eq!(
        refused(&with(&["accepted", "scheme"], json!("upto")), now),
        codes::UNSUPPORTED_SCHEME
    );
    for (field, value) in [
        ("network", json!("eip155:8453")),
        ("asset", json!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")),
        ("payTo", json!("0x742d35Cc6634C0532925a3b844Bc454e4438f44e")),
        ("amount", json!("10001")),
        ("amount", json!("9999")),
        ("amount", json!("10000.0")),
        ("amount", json!("0.01")),
    ] {
        assert_eq!(
            refused(&with(&["accepted", field], value.clone()), now),
            codes::NO_MATCH,
            "{field} {value}"
        );
    }
    // The authorization itself pays someone else, or another value.
    let to = with(
        &["payload", "authorization", "to"],
        json!("0x742d35Cc6634C0532925a3b844Bc454e4438f44e"),
    );
    assert_eq!(refused(&to, now), codes::RECIPIENT);
    let value = with(&["payload", "authorization", "value"], json!("10001"));
    assert_eq!(refused(&value, now), codes::VALUE);
    // The a2a-x402 spec's placeholder address is not an address.
    let placeholder = with(
        &["payload", "authorization", "to"],
        json!("0xServerWalletAddressHere"),
    );
    assert_eq!(refused(&placeholder, now), codes::INVALID_PAYLOAD);
    // 22: time. validBefore 1740672154: now + 5 is too close; validAfter 1740672089.
    assert_eq!(refused(&payload, 1740672154 - 5), codes::VALID_BEFORE);
    assert!(verify::verify(&payload, offered, 1740672154 - 6).is_ok());
    assert_eq!(refused(&payload, 1740672089 - 1), codes::VALID_AFTER);
    let enormous = with(
        &["payload", "authorization", "validBefore"],
        json!("99999999999"),
    );
    assert_eq!(refused(&enormous, now), codes::VALID_BEFORE);
    let overflow = with(
        &["payload", "authorization", "validBefore"],
        json!("1".repeat(30)),
    );
    assert_eq!(refused(&overflow, now), codes::VALID_BEFORE);
    // 23: signatures.
    let s = payload["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let flip = {
        let mut b = sig(&s);
        b[10] ^= 1;
        hex0x(&b)
    };
    let high_s = {
        // s' = n - s recovers the same key with the other v: malleable, refused.
        let b = sig(&s);
        let sg = k256::ecdsa::Signature::from_slice(&b[..64]).unwrap();
        let (r, s_) = sg.split_scalars();
        let neg = -*s_;
        let mut out = r.to_bytes().to_vec();
        out.extend_from_slice(&neg.to_bytes());
        out.push(if b[64] == 27 { 28 } else { 27 });
        hex0x(&out)
    };
    for bad in [
        flip,
        high_s,
        s[..s.len() - 2].to_string(),
        format!("{s}00"),
        format!("{}1d", &s[..s.len() - 2]),
        hex0x(&[0u8; 65]),
    ] {
        assert_eq!(
            refused(&with(&["payload", "signature"], json!(bad)), now),
            codes::SIGNATURE,
            "{bad}"
        );
    }
    // Another key's valid signature: the local-development key over the same fields.
    let dev = &vectors("x402-eip3009.json")["local_dev_key_example"];
    let other = with(&["payload", "signature"], dev["signature_rfc6979"].clone());
    assert_eq!(refused(&other, now), codes::SIGNATURE);
    // The wrong token domain (extra.name "USD Coin") recovers someone else.
    let mut usd_coin = req.clone();
    usd_coin.extra.as_mut().unwrap()["name"] = json!("USD Coin");
    let mut p = payload.clone();
    p["accepted"] = serde_json::to_value(&usd_coin).unwrap();
    assert_eq!(
        verify::verify(&p, &[usd_coin], now).unwrap_err().code,
        codes::SIGNATURE
    );
    // Malformed pieces.
    for (path, value) in [
        (&["payload"][..], json!(null)),
        (&["accepted"][..], json!("exact")),
        (&["payload", "authorization", "nonce"][..], json!("0x1234")),
        (&["payload", "authorization", "from"][..], json!(42)),
        (&["payload", "signature"][..], json!("not hex")),
    ] {
        assert_eq!(
            refused(&with(path, value.clone()), now),
            codes::INVALID_PAYLOAD,
            "{path:?} {value}"
        );
    }
}
