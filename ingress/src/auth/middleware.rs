//! The axum layer of [`Auth`] on `POST /`: the checks of [`crate::auth`], in order, first
//! failure wins.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{now, signature, Auth, AuthorityError};
use crate::body::refuse;
use crate::caller::{Caller, GrantedScopes};
use crate::error::EdgeError;

/// Longest accepted Authorization header.
const MAX_TOKEN_LEN: usize = 8 * 1024;

fn bearer(req: &Request) -> Option<String> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > MAX_TOKEN_LEN {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// The axum middleware (`from_fn_with_state`).
pub async fn layer(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    // As in Bindu, the transport credential is checked before the token.
    let certificate_did = if auth.settings.bind_client_certificate {
        match crate::tls::certificate_caller(&req) {
            Ok(did) => Some(did),
            Err(why) => return refuse(req, why).await,
        }
    } else {
        None
    };
    let Some(token) = bearer(&req) else {
        return refuse(req, EdgeError::TokenMissing).await;
    };
    let info = match auth.introspect(&token).await {
        Ok(i) => i,
        Err(AuthorityError::Unavailable(e)) => {
            tracing::warn!(error = %e, "token introspection unavailable");
            return refuse(req, EdgeError::AuthorityUnavailable).await;
        }
        Err(AuthorityError::Invalid(e)) => {
            tracing::info!(error = %e, "token introspection returned an unusable answer");
            return EdgeError::TokenUnusable.into_response();
        }
    };
    if !info.active {
        return EdgeError::TokenInactive.into_response();
    }
    let (Some(exp), Some(client)) = (
        info.exp,
        info.client_id.clone().or_else(|| info.sub.clone()),
    ) else {
        return refuse(req, EdgeError::TokenIncomplete).await;
    };
    if exp < now() {
        return EdgeError::TokenExpired.into_response();
    }
    if let Some(why) = info.unusable(auth.settings.audience.as_deref(), now()) {
        return EdgeError::TokenNotUsable(why).into_response();
    }
    if !auth.settings.allowed_dids.is_empty() && !auth.settings.allowed_dids.contains(&client) {
        return refuse(req, EdgeError::DidNotAdmitted).await;
    }
    if let Some(certificate_did) = certificate_did {
        if certificate_did != client {
            return refuse(req, EdgeError::CertificateDidMismatch { certificate_did }).await;
        }
    }
    let mut req = req;
    if client.starts_with("did:") {
        let checked = signature::verify(&auth, &client, req).await;
        let result = match &checked {
            Ok(_) => "verified",
            Err(EdgeError::Signature { reason, .. }) => reason.as_str(),
            Err(_) => "unavailable",
        };
        auth.metrics
            .signatures
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc();
        req = match checked {
            Ok(req) => req,
            Err(refusal) => return refusal.into_response(),
        };
    }
    if auth.settings.require_permissions {
        req.extensions_mut()
            .insert(GrantedScopes(info.scopes.clone()));
    }
    req.extensions_mut().insert(Caller(client));
    next.run(req).await
}
