//! The skill routes (public: `GET`/`HEAD`) and the private card.
//!
//! | route | answer |
//! |---|---|
//! | `GET /agent/skills` | `{"skills": [summary], "total": n}`, public skills only |
//! | `GET /agent/skills/{id}` | the full record plus `has_documentation`; unknown → 404, -32030 |
//! | `GET /agent/skills/{id}/documentation` | the raw `skill.yaml` (`application/yaml`) or `SKILL.md` (`text/markdown`) |
//! | `GET /agent/private.json` | the card with the private skills: 401 without credentials, 403 unless `agent.allowed_dids` lists the caller |
//!
//! Field names are snake_case, as Bindu serves them.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bindu_schemas::jsonrpc::RequestId;
use serde_json::{json, Value};

use super::LoadedSkill;
use crate::caller::Caller;
use crate::error::EdgeError;
use crate::state::Ingress;

/// Where a skill's documentation is served.
fn documentation_path(id: &str) -> String {
    format!("/agent/skills/{}/documentation", percent_encode(id))
}

/// `id` as one path segment.
fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The summary `GET /agent/skills` lists.
pub fn summary(loaded: &LoadedSkill) -> Value {
    let s = &loaded.skill;
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "version": s.version,
        "tags": s.tags,
        "input_modes": s.inputs(),
        "output_modes": s.outputs(),
    });
    if !s.examples.is_empty() {
        v["examples"] = json!(s.examples);
    }
    if loaded.documentation.is_some() {
        v["documentation_path"] = json!(documentation_path(&s.id));
    }
    v
}

/// The full record `GET /agent/skills/{id}` answers: every field the skill has (keys of its
/// file that skills do not know included), `has_documentation`, and the `SKILL.md` body.
pub fn record(loaded: &LoadedSkill) -> Value {
    let mut v = serde_json::to_value(&loaded.skill).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        for (k, extra) in &loaded.extra {
            map.entry(k.clone()).or_insert_with(|| extra.clone());
        }
        map.insert(
            "has_documentation".into(),
            json!(loaded.documentation.is_some()),
        );
        if loaded.documentation.is_some() {
            map.insert(
                "documentation_path".into(),
                json!(documentation_path(&loaded.skill.id)),
            );
        }
        if let Some(md) = &loaded.markdown {
            map.insert("markdown_content".into(), json!(md));
        }
    }
    v
}

fn json(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

pub(crate) async fn list(State(app): State<Ingress>) -> Response {
    let skills = app.inner.skills.public();
    json(&json!({
        "skills": skills.iter().map(|s| summary(s)).collect::<Vec<_>>(),
        "total": skills.len(),
    }))
}

pub(crate) async fn get(
    State(app): State<Ingress>,
    Path(id): Path<String>,
) -> Result<Response, EdgeError> {
    match app.inner.skills.public_skill(&id) {
        Some(s) => Ok(json(&record(s))),
        None => Err(EdgeError::SkillNotFound { id }),
    }
}

pub(crate) async fn documentation(
    State(app): State<Ingress>,
    Path(id): Path<String>,
) -> Result<Response, EdgeError> {
    let Some(skill) = app.inner.skills.public_skill(&id) else {
        return Err(EdgeError::SkillNotFound { id });
    };
    match &skill.documentation {
        Some(doc) => {
            Ok(([(header::CONTENT_TYPE, doc.media_type)], doc.text.clone()).into_response())
        }
        None => Err(EdgeError::SkillHasNoDocumentation { id }),
    }
}

/// `GET /agent/private.json`: behind the authentication layer, which answers 401 without
/// credentials; a caller `agent.allowed_dids` does not list gets 403.
pub(crate) async fn private_card(
    State(app): State<Ingress>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, EdgeError> {
    let caller = caller.map(|Extension(Caller(c))| c);
    let Some(card) = app.private_card(caller.as_deref(), RequestId::Null)? else {
        return Err(EdgeError::NoRoute {
            path: "/agent/private.json".into(),
        });
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        serde_json::to_vec(card).unwrap_or_default(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(
            documentation_path("pdf-processing-v1"),
            "/agent/skills/pdf-processing-v1/documentation"
        );
        assert_eq!(
            documentation_path("a b/c"),
            "/agent/skills/a%20b%2Fc/documentation"
        );
    }
}
