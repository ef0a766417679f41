use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Metadata;

/// The agent's self-description, served at `/.well-known/agent-card.json`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    pub protocol_version: String,
    pub name: String,
    pub description: String,
    pub url: String,
    pub version: String,
    pub capabilities: AgentCapabilities,
    pub default_input_modes: Vec<String>,
    pub default_output_modes: Vec<String>,
    pub skills: Vec<AgentSkill>,
    pub preferred_transport: Option<String>,
    pub additional_interfaces: Option<Vec<AgentInterface>>,
    pub icon_url: Option<String>,
    pub provider: Option<AgentProvider>,
    pub documentation_url: Option<String>,
    pub security_schemes: Option<BTreeMap<String, SecurityScheme>>,
    pub security: Option<Vec<BTreeMap<String, Vec<String>>>>,
    pub supports_authenticated_extended_card: Option<bool>,
    pub signatures: Option<Vec<AgentCardSignature>>,
    /// A2A 1.0: every interface, one per transport and protocol version (a 0.3 client
    /// reads `url` / `additionalInterfaces` and ignores it).
    pub supported_interfaces: Option<Vec<SupportedInterface>>,
}

/// A2A 1.0 `AgentInterface`: where a transport speaks a protocol version.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedInterface {
    pub url: String,
    /// `JSONRPC`, `HTTP+JSON` or `GRPC` ([`transport`]).
    pub protocol_binding: String,
    /// `Major.Minor`.
    pub protocol_version: String,
    pub tenant: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    pub streaming: Option<bool>,
    pub push_notifications: Option<bool>,
    pub state_transition_history: Option<bool>,
    pub extensions: Option<Vec<AgentExtension>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentExtension {
    pub uri: String,
    pub description: Option<String>,
    pub required: Option<bool>,
    pub params: Option<Metadata>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub examples: Option<Vec<String>>,
    #[serde(alias = "input_modes")]
    pub input_modes: Option<Vec<String>>,
    #[serde(alias = "output_modes")]
    pub output_modes: Option<Vec<String>>,
    pub security: Option<Vec<BTreeMap<String, Vec<String>>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInterface {
    pub url: String,
    pub transport: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentProvider {
    pub organization: String,
    pub url: String,
}

/// A JWS (RFC 7515) signature over the card.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCardSignature {
    pub protected: String,
    pub signature: String,
    pub header: Option<Metadata>,
}

/// `TransportProtocol` values.
pub mod transport {
    pub const JSONRPC: &str = "JSONRPC";
    pub const GRPC: &str = "GRPC";
    pub const HTTP_JSON: &str = "HTTP+JSON";
}

/// How a client authenticates, discriminated by `type`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SecurityScheme {
    #[serde(rename = "apiKey")]
    ApiKey {
        #[serde(rename = "in")]
        location: ApiKeyLocation,
        name: String,
        description: Option<String>,
    },
    #[serde(rename = "http", rename_all = "camelCase")]
    Http {
        scheme: String,
        bearer_format: Option<String>,
        description: Option<String>,
    },
    #[serde(rename = "oauth2", rename_all = "camelCase")]
    OAuth2 {
        flows: Box<OAuthFlows>,
        oauth2_metadata_url: Option<String>,
        description: Option<String>,
    },
    #[serde(rename = "openIdConnect", rename_all = "camelCase")]
    OpenIdConnect {
        open_id_connect_url: String,
        description: Option<String>,
    },
    #[serde(rename = "mutualTLS")]
    MutualTls { description: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyLocation {
    Query,
    Header,
    Cookie,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthFlows {
    pub authorization_code: Option<OAuthFlow>,
    pub client_credentials: Option<OAuthFlow>,
    pub implicit: Option<OAuthFlow>,
    pub password: Option<OAuthFlow>,
}

/// One OAuth2 flow. Which URLs are required depends on the flow (authorization code:
/// both; client credentials and password: `tokenUrl`; implicit: `authorizationUrl`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthFlow {
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub refresh_url: Option<String>,
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_schemes_round_trip() {
        let json = serde_json::json!({
            "bearer": {"type": "http", "scheme": "Bearer", "bearerFormat": "JWT"},
            "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
            "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "http://127.0.0.1/t", "scopes": {"agent:read": "read"}}}},
            "oidc": {"type": "openIdConnect", "openIdConnectUrl": "http://127.0.0.1/.well-known/openid-configuration"},
            "mtls": {"type": "mutualTLS"}
        });
        let parsed: BTreeMap<String, SecurityScheme> =
            serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json);
    }
}
