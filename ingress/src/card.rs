//! The agent card served at `/.well-known/agent-card.json` (and the legacy `agent.json`).

use crate::options::AgentConfig;
use bindu_schemas::{transport, AgentCapabilities, AgentCard, AgentInterface, AgentProvider};

/// A2A protocol version we speak.
pub const PROTOCOL_VERSION: &str = "0.3.0";

/// What the engine can honestly advertise.
#[derive(Debug, Clone, Copy, Default)]
pub struct CardCapabilities {
    pub streaming: bool,
    pub push_notifications: bool,
}

/// Builds the public card. `base_url` is where clients reach us (no trailing slash).
pub fn build_card(agent: &AgentConfig, base_url: &str, caps: CardCapabilities) -> AgentCard {
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
        skills: agent.skills.clone(),
        preferred_transport: Some(transport::JSONRPC.into()),
        additional_interfaces: Some(vec![AgentInterface {
            url,
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
        supports_authenticated_extended_card: None,
        signatures: None,
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
