//! The demo handler: replies with the parts of the user's last message.

use async_trait::async_trait;

use crate::handler::{Handler, HandlerError, HandlerInput, HandlerOutput};

#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler {
    /// Simulated work before the reply (cancellable).
    pub delay: std::time::Duration,
}

#[async_trait]
impl Handler for EchoHandler {
    async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
        if !self.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.delay) => {}
                _ = input.cancel.cancelled() => return Err("canceled".into()),
            }
        }
        let msg = input
            .last_user_message()
            .ok_or("the task has no user message to echo")?;
        let mut parts = msg.parts.clone();
        for p in &mut parts {
            *p.metadata_mut() = None;
        }
        Ok(HandlerOutput::Parts(parts))
    }
}
