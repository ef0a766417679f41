//! Batched Ed25519 verification of concurrent requests.
//!
//! One Ed25519 verification costs more than all the HTTP and JSON work of a request; verifying
//! many signatures together (`ed25519_dalek::verify_batch`) costs about half as much per
//! signature. [`BatchVerifier`] runs a dedicated thread: each request hands it a [`VerifyJob`]
//! and awaits the answer; the thread takes whatever jobs are waiting (up to
//! [`MAX_BATCH`]), verifies them as one batch and answers each. When the batch fails, its jobs
//! are verified one by one so only the bad ones are refused. A lone job is verified on its own
//! (no added latency beyond the hand-off), and when the queue is full the request verifies on
//! its own thread instead of waiting.
//!
//! Batch and single verification agree on every honestly generated key and signature; they
//! can differ only for crafted small-order keys, which a caller could only use against its own
//! registered key.

use std::sync::mpsc;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio::sync::oneshot;

/// Most signatures verified in one batch.
pub const MAX_BATCH: usize = 64;
/// Jobs waiting for the verifier thread before callers verify on their own.
const QUEUE: usize = 4096;

/// One signature to check: valid if it verifies over any of `messages` (alternative canonical
/// forms, most likely first; only the first takes part in the batch).
pub struct VerifyJob {
    pub key: VerifyingKey,
    pub signature: Signature,
    pub messages: Vec<Vec<u8>>,
}

impl VerifyJob {
    fn verify_alone(&self) -> bool {
        self.messages
            .iter()
            .any(|m| self.key.verify(m, &self.signature).is_ok())
    }
}

struct Pending {
    job: VerifyJob,
    reply: oneshot::Sender<bool>,
}

/// Handle to the verifier thread; cheap to clone. The thread ends when the last handle is
/// dropped.
#[derive(Clone)]
pub struct BatchVerifier {
    tx: mpsc::SyncSender<Pending>,
}

impl BatchVerifier {
    /// Starts the verifier thread. Should the thread not start, every job is verified on
    /// its caller's thread instead.
    pub fn start() -> BatchVerifier {
        let (tx, rx) = mpsc::sync_channel::<Pending>(QUEUE);
        if let Err(e) = std::thread::Builder::new()
            .name("bindu-verify".into())
            .spawn(move || run(rx))
        {
            tracing::warn!(error = %e, "could not start the signature verifier thread; verifying inline");
        }
        BatchVerifier { tx }
    }

    /// Whether `job`'s signature is valid.
    pub async fn verify(&self, job: VerifyJob) -> bool {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Pending { job, reply }) {
            Ok(()) => answer.await.unwrap_or(false),
            // Queue full or thread gone: verify here rather than wait.
            Err(mpsc::TrySendError::Full(p)) | Err(mpsc::TrySendError::Disconnected(p)) => {
                p.job.verify_alone()
            }
        }
    }
}

fn run(rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let results = verify_all(batch.iter().map(|p| &p.job));
        for (p, ok) in batch.drain(..).zip(results) {
            let _ = p.reply.send(ok);
        }
    }
}

/// Verifies every job: as one batch when there are several, falling back to one by one
/// when the batch fails. A job with no message is invalid.
pub fn verify_all<'a>(jobs: impl Iterator<Item = &'a VerifyJob>) -> Vec<bool> {
    let jobs: Vec<&VerifyJob> = jobs.collect();
    if jobs.len() > 1 && jobs.iter().all(|j| !j.messages.is_empty()) {
        let messages: Vec<&[u8]> = jobs.iter().map(|j| j.messages[0].as_slice()).collect();
        let signatures: Vec<Signature> = jobs.iter().map(|j| j.signature).collect();
        let keys: Vec<VerifyingKey> = jobs.iter().map(|j| j.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; jobs.len()];
        }
    }
    jobs.iter().map(|j| j.verify_alone()).collect()
}

/// A base58 Ed25519 public key, `None` when it is not 32 bytes or not a curve point.
pub fn decode_key(base58: &str) -> Option<VerifyingKey> {
    let mut raw = [0u8; 32];
    five8::decode_32(base58, &mut raw).ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

/// A base58 Ed25519 signature, `None` unless it decodes to 64 bytes.
pub fn decode_signature(base58: &str) -> Option<Signature> {
    let mut raw = [0u8; 64];
    five8::decode_64(base58, &mut raw).ok()?;
    Some(Signature::from_bytes(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn job(seed: u8, signed: &[u8], claimed: &[&[u8]]) -> VerifyJob {
        let key = SigningKey::from_bytes(&[seed; 32]);
        VerifyJob {
            key: key.verifying_key(),
            signature: key.sign(signed),
            messages: claimed.iter().map(|m| m.to_vec()).collect(),
        }
    }

    #[test]
    fn a_bad_signature_in_a_batch_fails_only_itself() {
        let jobs = [
            job(1, b"a", &[b"a"]),
            job(2, b"b", &[b"tampered"]),
            job(3, b"c", &[b"c"]),
            // Valid under its second form only.
            job(4, b"js form", &[b"python form", b"js form"]),
            job(5, b"e", &[]),
        ];
        assert_eq!(
            verify_all(jobs.iter()),
            vec![true, false, true, true, false]
        );
        let good: Vec<VerifyJob> = (0..10).map(|i| job(i, b"m", &[b"m"])).collect();
        assert_eq!(verify_all(good.iter()), vec![true; 10]);
        assert_eq!(verify_all(std::iter::empty()), Vec::<bool>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_are_answered_each() {
        let verifier = BatchVerifier::start();
        let mut handles = Vec::new();
        for i in 0..64u32 {
            let v = verifier.clone();
            handles.push(tokio::spawn(async move {
                let msg = i.to_be_bytes();
                let claimed: &[u8] = if i % 7 == 0 { b"other" } else { &msg };
                let j = job((i % 250) as u8, &msg, &[claimed]);
                (i, v.verify(j).await)
            }));
        }
        for h in handles {
            let (i, ok) = h.await.unwrap();
            assert_eq!(ok, i % 7 != 0, "job {i}");
        }
    }

    #[test]
    fn decoding_refuses_wrong_lengths_and_garbage() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let b58 = bs58::encode(key.verifying_key().to_bytes()).into_string();
        assert!(decode_key(&b58).is_some());
        assert!(decode_key("0OIl").is_none());
        assert!(decode_key(&bs58::encode([1u8; 31]).into_string()).is_none());
        assert!(decode_key(&"1".repeat(10_000)).is_none());
        let sig = bs58::encode(key.sign(b"x").to_bytes()).into_string();
        assert!(decode_signature(&sig).is_some());
        assert!(decode_signature(&bs58::encode([1u8; 63]).into_string()).is_none());
        assert!(decode_signature(&"z".repeat(1 << 20)).is_none());
    }
}
