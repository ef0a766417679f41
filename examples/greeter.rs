//! A minimal agent written against the library API.
//!
//! ```sh
//! cargo run --example greeter          # then send it a message/send on 127.0.0.1:3773
//! ```
//!
//! It greets whoever it is told about, and asks when the message is empty.

use std::sync::Arc;

use bindu::engine::config::Source;
use bindu::{handler_fn, HandlerError, HandlerInput, HandlerOutput};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = bindu::engine::Config::defaults();
    config.set("agent.name", "greeter", Source::Default)?;
    config.set(
        "agent.description",
        "Greets whoever you name.",
        Source::Default,
    )?;
    bindu::telemetry::init(&config.logging);

    let handler = handler_fn(|input: HandlerInput| async move {
        let text = input
            .last_user_message()
            .map(|m| m.text())
            .unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(HandlerOutput::InputRequired("Whom should I greet?".into()));
        }
        Ok::<_, HandlerError>(HandlerOutput::Text(format!("Hello, {}!", text.trim())))
    });

    let server = bindu::start(config, Arc::new(handler)).await?;
    println!("greeter listening on {}", server.base_url());
    let token = server.shutdown_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
    server.wait().await
}
