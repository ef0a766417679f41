//! The demo handler: replies with the parts of the user's last message.

use async_trait::async_trait;

use crate::handler::{Handler, HandlerError, HandlerInput, HandlerOutput};

#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler;

#[async_trait]
impl Handler for EchoHandler {
    async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
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
