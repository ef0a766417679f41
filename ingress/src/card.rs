//! The agent card served at `/.well-known/agent-card.json` (and the legacy `agent.json`):
//! [`build_card`] from the manifest and the public skills, [`compose`] with the DID
//! extension, the security schemes and the extended card (the public card plus the private
//! skills, overlaid by `agent.extended_card_file`), which `agent/getAuthenticatedExtendedCard`
//! and `/agent/private.json` serve.

use bindu_engine::identity::Identity;
use bindu_schemas::{
    transport, AgentCapabilities, AgentCard, AgentExtension, AgentInterface, AgentProvider,
    SecurityScheme, SupportedInterface,
};

use crate::did::DidInfo;
use crate::options::AgentConfig;
use crate::skills::Skills;

/// A2A protocol version we speak.
pub const PROTOCOL_VERSION: &str = "0.3.0";

/// What the engine can honestly advertise.
#[derive(Debug, Clone, Copy, Default)]
pub struct CardCapabilities {
    pub streaming: bool,
    pub push_notifications: bool,
}

/// Builds the public card with `skills`' public skills. `base_url` is where clients reach us
/// (no trailing slash); `rest_base_path` is where the HTTP+JSON binding is served under it
/// (`server.rest_base_path`).
pub fn build_card(
    agent: &AgentConfig,
    skills: &Skills,
    base_url: &str,
    rest_base_path: &str,
    caps: CardCapabilities,
) -> AgentCard {
    let url = format!("{base_url}/");
    let modes = vec!["text/plain".to_string(), "application/json".to_string()];
    AgentCard {
        protocol_version: PROTOCOL_VERSION.into(),
        name: agent.name.clone(),
        description: agent.description.clone(),
        url: url.clone(),
        version: agent.version.clone(),
        capabilities: AgentCapabilities {
            streaming: Some(caps.streaming),
            push_notifications: Some(caps.push_notifications),
            state_transition_history: Some(false),
            extensions: None,
        },
        default_input_modes: modes.clone(),
        default_output_modes: modes,
        skills: skills
            .public()
            .iter()
            .map(|s| s.skill.card_entry())
            .collect(),
        preferred_transport: Some(transport::JSONRPC.into()),
        additional_interfaces: Some(vec![AgentInterface {
            url: url.clone(),
            transport: transport::JSONRPC.into(),
        }]),
        icon_url: None,
        provider: agent.author.as_ref().map(|a| AgentProvider {
            organization: a.clone(),
            url: agent
                .provider_url
                .clone()
                .unwrap_or_else(|| base_url.to_string()),
        }),
        documentation_url: agent.documentation_url.clone(),
        security_schemes: None,
        security: None,
        security_requirements: None,
        supports_authenticated_extended_card: None,
        signatures: None,
        // 1.0 clients find their interface here; the newest version first, JSON-RPC (the
        // preferred transport) before HTTP+JSON, which serves 1.0 only. A client appends
        // `/message:send` and the like to the HTTP+JSON URL.
        supported_interfaces: Some(
            ["1.0", "0.3"]
                .into_iter()
                .map(|version| SupportedInterface {
                    url: url.clone(),
                    protocol_binding: transport::JSONRPC.into(),
                    protocol_version: version.into(),
                    tenant: None,
                })
                .chain([SupportedInterface {
                    url: format!("{base_url}{rest_base_path}"),
                    protocol_binding: transport::HTTP_JSON.into(),
                    protocol_version: "1.0".into(),
                    tenant: None,
                }])
                .collect(),
        ),
    }
}

/// Reads the extended card: the JSON object in `path`, laid over the public card.
pub fn load_extended_card(path: &std::path::Path, public: &AgentCard) -> Result<AgentCard, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let overlay: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON object: {e}", path.display()))?;
    let mut merged = match serde_json::to_value(public) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err("the public card could not be serialised".into()),
    };
    merged.extend(overlay);
    merged.insert("supportsAuthenticatedExtendedCard".into(), true.into());
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| format!("{} does not make a valid agent card: {e}", path.display()))
}

/// Everything the served cards are composed of.
pub struct CardParts<'a> {
    pub agent: &'a AgentConfig,
    pub skills: &'a Skills,
    pub identity: &'a Identity,
    /// Where clients reach the agent (no trailing slash).
    pub base_url: &'a str,
    /// Where the HTTP+JSON binding is served under `base_url` (`server.rest_base_path`).
    pub rest_base_path: &'a str,
    /// The A2A 1.0 tenant (`server.tenant`), named on the card's 1.0 interfaces.
    pub tenant: Option<&'a str>,
    pub capabilities: CardCapabilities,
    /// Client certificates take part in authentication (`MTLS__*`).
    pub client_certs: bool,
    /// Bearer tokens are required (`AUTH__ENABLED`).
    pub bearer: bool,
    /// The prices of a priced agent or of its skills (x402): the card lists the a2a-x402
    /// extension (see [`x402_extension`]).
    pub payments: Option<&'a crate::payments::Prices>,
}

/// The cards an ingress serves and its DID document.
pub struct Cards {
    pub public: AgentCard,
    /// `agent/getAuthenticatedExtendedCard` and `/agent/private.json`: when there are
    /// private skills, an access list (`agent.allowed_dids`) or `agent.extended_card_file`.
    pub extended: Option<AgentCard>,
    pub did: DidInfo,
}

/// The a2a-x402 extension of the card: required when the agent itself is priced. Its
/// `params.accepts` is the agent's price (`[]`: free), `params.skills` the skills with a
/// price of their own, by id: `{"accepts": [...]}` (`[]`: free); the other skills cost the
/// agent's price.
fn x402_extension(
    prices: &crate::payments::Prices,
    skills: serde_json::Map<String, serde_json::Value>,
) -> AgentExtension {
    let mut params = serde_json::json!({
        "x402Version": bindu_schemas::x402::X402_VERSION,
        "accepts": prices.agent,
    });
    if !skills.is_empty() {
        params["skills"] = serde_json::Value::Object(skills);
    }
    AgentExtension {
        uri: bindu_schemas::x402::EXTENSION_URI.into(),
        description: Some(
            "x402 payments: protected methods need an x402 v2 payment (PAYMENT-SIGNATURE or X-PAYMENT header); without one the answer is HTTP 402 with the requirements: `accepts`, or the targeted skill's (`message.metadata.skillId`) in `skills`".into(),
        ),
        required: Some(!prices.agent.is_empty()),
        params: params.as_object().cloned(),
    }
}

/// Composes the public card (manifest, DID extension, security schemes), the extended card
/// and the DID document. The error names the extended card's file.
pub fn compose(parts: CardParts<'_>) -> Result<Cards, String> {
    let CardParts {
        agent,
        skills,
        identity,
        base_url,
        rest_base_path,
        tenant,
        capabilities,
        client_certs,
        bearer,
        payments,
    } = parts;
    let mut card = build_card(agent, skills, base_url, rest_base_path, capabilities);
    // A 1.0 client sends the tenant its interface names (0.3 has no tenant).
    for interface in card.supported_interfaces.iter_mut().flatten() {
        if interface.protocol_version == "1.0" {
            interface.tenant = tenant.map(str::to_string);
        }
    }
    card.capabilities.extensions = Some(vec![AgentExtension {
        uri: identity.did.clone(),
        description: Some(format!("DID-based identity for {}", agent.name)),
        required: Some(false),
        params: serde_json::json!({
            "author": agent.author,
            "agent_name": agent.name,
            "agent_id": identity.agent_id(),
            "publicKeyBase58": identity.public_key_base58(),
            "webhookPublicKeyBase58": identity.webhook_public_key_base58(),
            "didKey": identity.did_key(),
        })
        .as_object()
        .cloned(),
    }]);
    if let (Some(prices), Some(extensions)) = (payments, card.capabilities.extensions.as_mut()) {
        let ids = skills.public().iter().map(|s| s.skill.id.as_str());
        extensions.push(x402_extension(prices, prices.card_skills(ids)));
    }
    let did = DidInfo {
        did: identity.did.clone(),
        aliases: vec![identity.did_key()],
        document: identity.document(&bindu_engine::time::now_rfc3339()),
    };
    // The extended card is the public card as it is before its security schemes, with the
    // private skills, overlaid by the extended card's file.
    let mut private = card.clone();
    private
        .skills
        .extend(skills.private().iter().map(|s| s.skill.card_entry()));
    if let Some(prices) = payments {
        // The private skills' prices are on the private card only.
        let ids = skills
            .public()
            .iter()
            .chain(skills.private())
            .map(|s| s.skill.id.as_str());
        let ext = x402_extension(prices, prices.card_skills(ids));
        if let Some(e) = private
            .capabilities
            .extensions
            .iter_mut()
            .flatten()
            .find(|e| e.uri == ext.uri)
        {
            *e = ext;
        }
    }
    let extended = match &agent.extended_card_file {
        Some(path) => Some(
            load_extended_card(path, &private)
                .map_err(|e| format!("agent.extended_card_file / BINDU_EXTENDED_CARD_FILE: {e}"))?,
        ),
        None if skills.restricted() => {
            private.supports_authenticated_extended_card = Some(true);
            Some(private)
        }
        None => None,
    };
    if extended.is_some() {
        card.supports_authenticated_extended_card = Some(true);
    }
    if client_certs {
        let schemes = card.security_schemes.get_or_insert_with(Default::default);
        schemes.insert(
            "mtls".to_string(),
            SecurityScheme::MutualTls {
                description: Some(
                    "TLS client certificate naming the caller's DID in a URI SAN".into(),
                ),
            },
        );
    }
    if bearer {
        // Honest card: callers learn they need a Bearer token (beside the client
        // certificate in hybrid mode: one requirement naming both).
        card.security_schemes.get_or_insert_with(Default::default).insert(
            "bearer".to_string(),
            SecurityScheme::Http {
                scheme: "Bearer".into(),
                bearer_format: None,
                description: Some(
                    "OAuth2 access token from the agent's Hydra; DID clients also sign requests (X-DID, X-DID-Timestamp, X-DID-Signature)".into(),
                ),
            },
        );
    }
    if bearer || client_certs {
        card.require(
            [(bearer, "bearer"), (client_certs, "mtls")]
                .into_iter()
                .filter_map(|(needed, scheme)| needed.then_some(scheme)),
        );
    }
    Ok(Cards {
        public: card,
        extended,
        did,
    })
}
