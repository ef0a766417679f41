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
    /// Each scheme in both forms at once ([`both_forms`]).
    #[serde(default, serialize_with = "both_forms")]
    pub security_schemes: Option<BTreeMap<String, SecurityScheme>>,
    pub security: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// A2A 1.0's form of `security` (`[{"schemes": {"bearer": {"list": []}}}]`); 0.3
    /// readers ignore it. [`AgentCard::require`] sets both.
    pub security_requirements: Option<Vec<SecurityRequirement>>,
    pub supports_authenticated_extended_card: Option<bool>,
    pub signatures: Option<Vec<AgentCardSignature>>,
    /// A2A 1.0: every interface, one per transport and protocol version (a 0.3 client
    /// reads `url` / `additionalInterfaces` and ignores it).
    pub supported_interfaces: Option<Vec<SupportedInterface>>,
}

impl AgentCard {
    /// Callers must satisfy every scheme of `schemes` (one requirement, no scopes), said in
    /// 0.3's `security` and 1.0's `securityRequirements`.
    pub fn require<'a>(&mut self, schemes: impl IntoIterator<Item = &'a str>) {
        let schemes: Vec<&str> = schemes.into_iter().collect();
        self.security = Some(vec![schemes
            .iter()
            .map(|s| (s.to_string(), Vec::new()))
            .collect()]);
        self.security_requirements = Some(vec![SecurityRequirement {
            schemes: schemes
                .iter()
                .map(|s| (s.to_string(), StringList::default()))
                .collect(),
        }]);
    }
}

/// A2A 1.0 `SecurityRequirement`: the schemes a caller must satisfy together, with their
/// scopes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityRequirement {
    pub schemes: BTreeMap<String, StringList>,
}

/// A2A 1.0 `StringList`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StringList {
    #[serde(default)]
    pub list: Vec<String>,
}

/// Writes each security scheme as 0.3 has it (`type` and the fields), holding in the same
/// object A2A 1.0's `oneof` member for it (`httpAuthSecurityScheme`, `mtlsSecurityScheme`,
/// …: the same fields, 0.3's `in` named `location`). A 0.3 reader ignores the member (0.3
/// allows more properties); a 1.0 reader that ignores unknown fields (as its JSON mapping
/// lets it, and as the official SDKs do) finds its form. Reading takes 0.3's form.
fn both_forms<S: serde::Serializer>(
    schemes: &Option<BTreeMap<String, SecurityScheme>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeMap};
    let Some(schemes) = schemes else {
        return s.serialize_none();
    };
    let mut map = s.serialize_map(Some(schemes.len()))?;
    for (name, scheme) in schemes {
        let serde_json::Value::Object(mut v03) =
            serde_json::to_value(scheme).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("a security scheme is a JSON object"));
        };
        let mut v10 = v03.clone();
        v10.remove("type");
        if let Some(location) = v10.remove("in") {
            v10.insert("location".into(), location);
        }
        let member = match scheme {
            SecurityScheme::ApiKey { .. } => "apiKeySecurityScheme",
            SecurityScheme::Http { .. } => "httpAuthSecurityScheme",
            SecurityScheme::OAuth2 { .. } => "oauth2SecurityScheme",
            SecurityScheme::OpenIdConnect { .. } => "openIdConnectSecurityScheme",
            SecurityScheme::MutualTls { .. } => "mtlsSecurityScheme",
        };
        v03.insert(member.into(), serde_json::Value::Object(v10));
        map.serialize_entry(name, &v03)?;
    }
    map.end()
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

    #[test]
    fn a_card_says_its_security_in_both_versions() {
        let json = serde_json::json!({
            "protocolVersion": "0.3.0", "name": "a", "description": "d", "url": "http://127.0.0.1/",
            "version": "1", "capabilities": {}, "defaultInputModes": ["text"],
            "defaultOutputModes": ["text"], "skills": [],
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "Bearer"},
                "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
                "mtls": {"type": "mutualTLS", "description": "m"}
            }
        });
        let mut card: AgentCard = serde_json::from_value(json).unwrap();
        card.require(["bearer", "mtls"]);
        let out = serde_json::to_value(&card).unwrap();
        assert_eq!(
            out["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "Bearer",
                               "httpAuthSecurityScheme": {"scheme": "Bearer"}})
        );
        assert_eq!(
            out["securitySchemes"]["key"]["apiKeySecurityScheme"],
            serde_json::json!({"location": "header", "name": "X-Key"})
        );
        assert_eq!(
            out["securitySchemes"]["mtls"]["mtlsSecurityScheme"],
            serde_json::json!({"description": "m"})
        );
        assert_eq!(
            out["security"],
            serde_json::json!([{"bearer": [], "mtls": []}])
        );
        assert_eq!(
            out["securityRequirements"],
            serde_json::json!([{"schemes": {"bearer": {"list": []}, "mtls": {"list": []}}}])
        );
        // Read back: the 0.3 form, the 1.0 member ignored.
        let again: AgentCard = serde_json::from_value(out).unwrap();
        assert_eq!(again, card);
    }
}
