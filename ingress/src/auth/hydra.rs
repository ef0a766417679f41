//! Ory Hydra's admin API as the [`TokenAuthority`]: `POST /admin/oauth2/introspect` (form
//! field `token`) and `GET /admin/clients/{id}` (`metadata.public_key`, base58).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{AuthorityError, Introspection, TokenAuthority};

pub struct Hydra {
    admin_url: String,
    http: reqwest::Client,
}

impl Hydra {
    pub fn new(admin_url: &str, timeout: Duration) -> Result<Hydra, AuthorityError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthorityError::Unavailable(e.to_string()))?;
        Ok(Hydra {
            admin_url: admin_url.trim_end_matches('/').to_string(),
            http,
        })
    }
}

fn unavailable(e: reqwest::Error) -> AuthorityError {
    AuthorityError::Unavailable(e.without_url().to_string())
}

/// The JSON body of an answer from Hydra.
async fn json_of(resp: reqwest::Response) -> Result<Value, AuthorityError> {
    resp.json()
        .await
        .map_err(|e| AuthorityError::Invalid(e.without_url().to_string()))
}

/// Percent-encodes one path segment (a DID's `:` becomes `%3A`).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl TokenAuthority for Hydra {
    async fn introspect(&self, token: &str) -> Result<Introspection, AuthorityError> {
        let resp = self
            .http
            .post(format!("{}/admin/oauth2/introspect", self.admin_url))
            .form(&[("token", token), ("scope", "")])
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(AuthorityError::Unavailable(format!(
                "introspection answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(AuthorityError::Invalid(format!(
                "introspection answered {status}"
            )));
        }
        let body = json_of(resp).await?;
        let Some(active) = body.get("active").and_then(Value::as_bool) else {
            return Err(AuthorityError::Invalid("no boolean `active`".into()));
        };
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        // RFC 7662: `aud` is a string or an array of strings.
        let audience = match body.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Introspection {
            active,
            client_id: text("client_id"),
            sub: text("sub"),
            exp: body.get("exp").and_then(Value::as_i64),
            nbf: body.get("nbf").and_then(Value::as_i64),
            scopes: text("scope")
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            token_use: text("token_use"),
            audience,
        })
    }

    async fn client_public_key(&self, client_id: &str) -> Result<Option<String>, AuthorityError> {
        let resp = self
            .http
            .get(format!(
                "{}/admin/clients/{}",
                self.admin_url,
                segment(client_id)
            ))
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(AuthorityError::Unavailable(format!(
                "client lookup answered {status}"
            )));
        }
        let body = json_of(resp).await?;
        Ok(body
            .pointer("/metadata/public_key")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 64)
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dids_are_one_path_segment() {
        assert_eq!(
            super::segment("did:bindu:a_b:c:1-2"),
            "did%3Abindu%3Aa_b%3Ac%3A1-2"
        );
        assert_eq!(super::segment("../x"), "..%2Fx");
    }
}
