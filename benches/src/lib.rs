//! Shared fixtures for the criterion benchmarks in `benches/`.

/// A realistic `message/send` request (camelCase, text + data parts, non-blocking).
pub const MESSAGE_SEND: &str = r#"{"jsonrpc":"2.0","id":"6f1c1f0e-1d6b-4f0a-9f43-0c1f8f7f3a11","method":"message/send","params":{"message":{"role":"user","kind":"message","messageId":"0b6a3c5e-8a51-4b7e-9d55-2f3c9a1e7d20","contextId":"c3a0f6f2-5e2b-4b8e-a3f1-7d9c2b6e4f10","parts":[{"kind":"text","text":"Summarise the attached quarterly numbers in three bullet points."},{"kind":"data","data":{"quarter":"Q3","revenue":1250000,"currency":"EUR"}}]},"configuration":{"blocking":false,"historyLength":10,"acceptedOutputModes":["text/plain"]}}}"#;

/// The same method with Bindu's snake_case field names.
pub const MESSAGE_SEND_SNAKE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"message/send","params":{"message":{"role":"user","message_id":"m-1","context_id":"c-1","task_id":"t-1","parts":[{"kind":"text","text":"hello"}]},"configuration":{"history_length":2}}}"#;
