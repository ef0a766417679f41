//! DID request signatures: canonical bytes + Ed25519 verification per request, one at a
//! time and batched (64 concurrent requests verified together).

use bindu_benches::MESSAGE_SEND;
use bindu_schemas::signing::{signing_payload, Form};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

fn verify(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[9; 32]);
    let public = key.verifying_key();
    let did = "did:bindu:ops_at_example_com:gateway:139e3940-e64b-5491-7220-88d9a0d74162";
    let payload = signing_payload(MESSAGE_SEND, did, 1_700_000_000, Form::Python);
    let sig = key.sign(payload.as_bytes());
    let sig_b58 = bs58::encode(sig.to_bytes()).into_string();

    let mut g = c.benchmark_group("did_signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonical_bytes", |b| {
        b.iter(|| {
            black_box(signing_payload(
                black_box(MESSAGE_SEND),
                did,
                1_700_000_000,
                Form::Python,
            ))
        })
    });
    g.bench_function("bytes_decode_verify_single", |b| {
        b.iter(|| {
            let p = signing_payload(black_box(MESSAGE_SEND), did, 1_700_000_000, Form::Python);
            let raw = bs58::decode(black_box(&sig_b58))
                .into_vec()
                .expect("base58");
            let s = Signature::from_slice(&raw).expect("64 bytes");
            public.verify(p.as_bytes(), &s).expect("valid")
        })
    });
    const N: usize = 64;
    let messages: Vec<String> = (0..N)
        .map(|i| signing_payload(MESSAGE_SEND, did, 1_700_000_000 + i as i64, Form::Python))
        .collect();
    let sigs: Vec<Signature> = messages.iter().map(|m| key.sign(m.as_bytes())).collect();
    let keys: Vec<VerifyingKey> = vec![public; N];
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("verify_batch_64", |b| {
        b.iter(|| {
            let msgs: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &keys).expect("valid batch")
        })
    });
    g.bench_function("verify_one_by_one_64", |b| {
        b.iter(|| {
            for (m, s) in messages.iter().zip(&sigs) {
                public.verify(m.as_bytes(), s).expect("valid");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
