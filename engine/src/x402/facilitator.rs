//! The facilitator: the service that verifies a payment against the chain and settles it
//! (`POST /verify`, `POST /settle`, `GET /supported`, x402 v2 JSON). Ingress verifies before
//! it accepts a task; workers settle after the handler succeeded.

use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::x402::{
    FacilitatorRequest, PaymentRequirements, SettleResponse, SupportedResponse, VerifyResponse,
    X402_VERSION,
};

/// Why the facilitator gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// No answer within the timeout: for a settlement, the outcome is unknown (the transfer
    /// may still land).
    #[error("the payment facilitator did not answer within {0:?}")]
    TimedOut(Duration),
    /// Unreachable, or an HTTP error status: nothing happened.
    #[error("the payment facilitator is unavailable: {0}")]
    Unavailable(String),
    /// It answered 2xx with something that is not the protocol's JSON.
    #[error("the payment facilitator answered with something unusable: {0}")]
    Invalid(String),
}

/// The port (ingress and workers consume it; [`HttpFacilitator`] is the implementation).
#[async_trait]
pub trait Facilitator: Send + Sync + 'static {
    async fn verify(
        &self,
        payload: &serde_json::Value,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError>;
    async fn settle(
        &self,
        payload: &serde_json::Value,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError>;
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError>;
}

/// A facilitator over HTTP (`X402__FACILITATOR_URL`).
pub struct HttpFacilitator {
    base: String,
    client: reqwest::Client,
    timeout: Duration,
}

/// Most bytes of a facilitator answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

impl HttpFacilitator {
    /// `base` without a trailing slash; each request is bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<HttpFacilitator, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpFacilitator {
            base: base.trim_end_matches('/').to_string(),
            client,
            timeout,
        })
    }

    fn failed(&self, e: reqwest::Error) -> FacilitatorError {
        if e.is_timeout() {
            FacilitatorError::TimedOut(self.timeout)
        } else {
            // The error names the URL, which is configuration, not a secret.
            FacilitatorError::Unavailable(e.without_url().to_string())
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, FacilitatorError> {
        let mut resp = request.send().await.map_err(|e| self.failed(e))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.failed(e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(FacilitatorError::Invalid(format!(
                    "an answer over {MAX_ANSWER_BYTES} bytes"
                )));
            }
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(200).collect();
            return Err(FacilitatorError::Unavailable(format!(
                "HTTP {status}: {text}"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| FacilitatorError::Invalid(e.to_string()))
    }

    /// POSTs `payload` for `requirements` to the facilitator's `/{path}`; its answer.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        payload: &serde_json::Value,
        requirements: &PaymentRequirements,
    ) -> Result<T, FacilitatorError> {
        let url = format!("{}/{path}", self.base);
        self.read(
            self.client
                .post(url)
                .json(&Self::body(payload, requirements)),
        )
        .await
    }

    fn body(payload: &serde_json::Value, requirements: &PaymentRequirements) -> FacilitatorRequest {
        FacilitatorRequest {
            x402_version: X402_VERSION,
            payment_payload: payload.clone(),
            payment_requirements: requirements.clone(),
        }
    }
}

#[async_trait]
impl Facilitator for HttpFacilitator {
    async fn verify(
        &self,
        payload: &serde_json::Value,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError> {
        self.post("verify", payload, requirements).await
    }

    async fn settle(
        &self,
        payload: &serde_json::Value,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError> {
        self.post("settle", payload, requirements).await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let url = format!("{}/supported", self.base);
        self.read(self.client.get(url)).await
    }
}

/// Whether a settlement refusal says the authorization's nonce is already used (x402's
/// `invalid_transaction_state`, or a facilitator's own words for it). On a retry of a
/// settlement that was asked for before, that is the earlier attempt's success.
pub fn already_used(refusal: &SettleResponse) -> bool {
    says_used(refusal.error_reason.as_deref().unwrap_or_default())
}

/// Whether a `/verify` answer says the authorization's nonce is already used: a transfer
/// with it landed (asked without settling anything).
pub fn verified_used(answer: &VerifyResponse) -> bool {
    !answer.is_valid
        && [&answer.invalid_reason, &answer.invalid_message]
            .into_iter()
            .flatten()
            .any(|r| says_used(r))
}

fn says_used(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason == "invalid_transaction_state"
        || reason.contains("already_settled")
        || reason.contains("already settled")
        || reason.contains("authorization_used")
        || reason.contains("authorization is used")
        || (reason.contains("nonce") && (reason.contains("used") || reason.contains("already")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(reason: &str) -> SettleResponse {
        SettleResponse {
            success: false,
            error_reason: Some(reason.into()),
            payer: None,
            transaction: String::new(),
            network: "eip155:84532".into(),
            amount: None,
        }
    }

    #[test]
    fn a_used_nonce_is_recognised_in_the_words_facilitators_use() {
        for used in [
            "invalid_transaction_state",
            "Nonce already used",
            "authorization_used_or_canceled",
            "FiatTokenV2: authorization is used or canceled",
            "payment already settled",
        ] {
            assert!(already_used(&refusal(used)), "{used}");
        }
        for other in [
            "insufficient_funds",
            "invalid_exact_evm_payload_signature",
            "",
        ] {
            assert!(!already_used(&refusal(other)), "{other}");
        }
    }
}
