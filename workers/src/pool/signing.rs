//! Signing the text parts of a result with the agent's key (Bindu's scheme: each text part
//! carries its signature in its metadata).

use bindu_engine::identity::{Identity, SIGNATURE_METADATA_KEY};
use bindu_engine::store::TaskUpdate;
use bindu_schemas::Part;

/// Text parts beyond which signing runs as CPU-heavy work ([`bindu_engine::cpu::heavy`]).
pub(super) const HEAVY_SIGNING_PARTS: usize = 64;

pub(super) fn text_parts(parts: &[Part]) -> usize {
    parts.iter().filter(|p| matches!(p, Part::Text(_))).count()
}

/// Signs every text part of an update's artifacts, history and status message. The same
/// text (the artifact and the agent's reply usually carry it twice) is signed once.
pub(crate) fn sign_update(update: &mut TaskUpdate, identity: &Identity) {
    let count = update
        .artifacts
        .iter()
        .map(|c| text_parts(&c.artifact.parts))
        .chain(update.history.iter().map(|m| text_parts(&m.parts)))
        .sum::<usize>();
    bindu_engine::cpu::heavy(count > HEAVY_SIGNING_PARTS, || {
        let mut memo = Memo::new();
        for chunk in &mut update.artifacts {
            sign_parts_memo(&mut chunk.artifact.parts, identity, &mut memo);
        }
        for m in &mut update.history {
            sign_parts_memo(&mut m.parts, identity, &mut memo);
        }
        if let Some((_, Some(m))) = &mut update.status {
            sign_parts_memo(&mut m.parts, identity, &mut memo);
        }
    })
}

/// Adds `metadata["did.message.signature"]` (base58 Ed25519 over the UTF-8 text) to each
/// text part, except a text shaped like a signing envelope
/// ([`bindu_schemas::signing::is_signing_envelope`]), which stays unsigned.
pub fn sign_parts(parts: &mut [Part], identity: &Identity) {
    bindu_engine::cpu::heavy(text_parts(parts) > HEAVY_SIGNING_PARTS, || {
        sign_parts_memo(parts, identity, &mut Memo::new())
    })
}

/// Signatures already made, by text: a text repeated in many parts is signed once, and
/// looking it up costs the same however many parts came before (work linear in the parts).
type Memo = std::collections::HashMap<String, String>;

pub(super) fn sign_parts_memo(parts: &mut [Part], identity: &Identity, memo: &mut Memo) {
    for part in parts {
        if let Part::Text(t) = part {
            if bindu_schemas::signing::is_signing_envelope(&t.text) {
                // Its signature would be a request (or webhook) signature in the agent's
                // name: such a text stays unsigned.
                tracing::debug!("a text part shaped like a signing envelope is left unsigned");
                continue;
            }
            let sig = match memo.get(t.text.as_str()) {
                Some(sig) => sig.clone(),
                None => {
                    let sig = identity.sign_base58(t.text.as_bytes());
                    memo.insert(t.text.clone(), sig.clone());
                    sig
                }
            };
            t.metadata
                .get_or_insert_with(Default::default)
                .insert(SIGNATURE_METADATA_KEY.to_string(), sig.into());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bindu_engine::identity::verify_base58;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::pool::agent_message;
    use bindu_engine::store::{ArtifactChunk, Expect};
    use bindu_schemas::{Artifact, TaskState};

    fn signature(p: &Part) -> String {
        match p {
            Part::Text(t) => t.metadata.as_ref().unwrap()[SIGNATURE_METADATA_KEY]
                .as_str()
                .unwrap()
                .to_string(),
            _ => panic!("not a text part"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_text_part_of_an_update_is_signed_over_its_own_text() {
        let identity = Identity::new(SigningKey::from_bytes(&[7; 32]), "acme", "signer");
        // Many parts (signed as CPU-heavy work), texts repeated across the artifact and the
        // reply.
        let parts: Vec<Part> = (0..80)
            .map(|i| Part::text(format!("t{}", i % 40)))
            .collect();
        let mut update = TaskUpdate::new("task", Expect::Active)
            .history(agent_message(parts.clone()))
            .status(TaskState::Completed, Some(agent_message(parts.clone())));
        update.artifacts.push(ArtifactChunk {
            artifact: Artifact {
                artifact_id: "a".into(),
                name: None,
                description: None,
                parts,
                metadata: None,
                extensions: None,
            },
            append: false,
            last_chunk: true,
        });
        sign_update(&mut update, &identity);
        let key = identity.public_key_base58();
        let all = update
            .artifacts
            .iter()
            .flat_map(|c| c.artifact.parts.iter())
            .chain(update.history.iter().flat_map(|m| m.parts.iter()))
            .chain(
                update
                    .status
                    .iter()
                    .flat_map(|(_, m)| m.iter().flat_map(|m| m.parts.iter())),
            );
        let mut seen = 0;
        for part in all {
            let Part::Text(t) = part else { continue };
            assert!(
                verify_base58(&key, t.text.as_bytes(), &signature(part)),
                "{}",
                t.text
            );
            seen += 1;
        }
        assert_eq!(seen, 240);
    }
}
