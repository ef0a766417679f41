//! A minimal agent written against the library API (`bindu::Agent::builder()`).
//!
//! ```sh
//! cargo run --example greeter              # HTTP + workers on 127.0.0.1:3773
//! BINDU_PORT=4000 cargo run --example greeter   # environment variables still apply
//!
//! # The same handler as separate worker processes beside `bindu ingress`
//! # (STORAGE_TYPE=postgres DATABASE_URL=… SCHEDULER_TYPE=nats NATS_URL=…):
//! cargo run --example greeter -- worker
//! ```
//!
//! It greets whoever it is told about, streaming the greeting in chunks, and asks when the
//! message is empty (a follow-up `message/send` with the same `taskId` resumes the task).

use bindu::schemas::Part;
use bindu::{handler_fn, Agent, HandlerError, HandlerInput, HandlerOutput};

async fn greet(input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
    let text = input
        .last_user_message()
        .map(|m| m.text())
        .unwrap_or_default();
    let name = text.trim();
    if name.is_empty() {
        return Ok(HandlerOutput::InputRequired("Whom should I greet?".into()));
    }
    input.emitter.status("Composing a greeting…").await?;
    let mut stream = input.emitter.stream("greeting");
    for word in ["Hello,", " ", name, "!"] {
        if input.cancel.is_cancelled() {
            return Err("canceled".into());
        }
        stream.send(vec![Part::text(word)]).await?;
    }
    stream.finish(Vec::new()).await?;
    Ok(HandlerOutput::Streamed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let worker_only = std::env::args().nth(1).as_deref() == Some("worker");
    let agent = Agent::builder()
        .name("greeter")
        .description("Greets whoever you name.")
        .version("1.0.0")
        .skill(bindu::agent::skill(
            "greet",
            "Greet",
            "Says hello to the name you send",
            &["greeting", "demo"],
        ))
        .handler(handler_fn(greet))
        .with_env()
        .build()?;
    bindu::telemetry::init(&agent.config().logging);

    let server = if worker_only {
        agent.worker().await?
    } else {
        agent.serve().await?
    };
    if !worker_only {
        println!("greeter listening on {}", server.base_url());
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
    server.wait().await?;
    Ok(())
}
