//! Reading a streamed chat completion: server-sent events (framed by
//! [`bindu_engine::sse::SseDecoder`]) whose data carry `chat.completion.chunk` objects, ended
//! by `data: [DONE]`.

use serde_json::Value;

/// What one `data:` payload means.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Text to append to the reply (may be empty: role-only or finish chunks).
    Delta(String),
    /// `[DONE]`.
    Done,
    /// The server reported an error inside the stream.
    Error(String),
}

/// Interprets one event's data (framed by [`bindu_engine::sse::SseDecoder`]).
pub fn parse_data(data: &str) -> Result<Event, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Event::Done);
    }
    parse_chunk(data)
}

/// Interprets one SSE line; `None` for lines that carry nothing for us (blank lines,
/// comments, `event:`/`id:` fields).
pub fn parse_line(line: &str) -> Option<Result<Event, String>> {
    Some(parse_data(line.strip_prefix("data:")?))
}

/// One `chat.completion.chunk` (or an error object).
pub fn parse_chunk(data: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(data).map_err(|e| {
        format!(
            "the model sent a stream event that is not JSON ({e}): {:?}",
            data.chars().take(200).collect::<String>()
        )
    })?;
    if let Some(err) = v.get("error") {
        return Ok(Event::Error(error_message(err)));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    let text = choice
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(Event::Delta(text.to_string()))
}

/// The message of an OpenAI-style error object (`{"message": …}` or a bare string).
pub fn error_message(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| err.as_str().map(str::to_string))
        .unwrap_or_else(|| err.to_string())
}

/// The reply text of a non-streamed completion (a server that ignored `stream: true`).
pub fn completion_text(body: &Value) -> Option<String> {
    body.get("choices")?
        .get(0)?
        .get("message")?
        .get("content")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads_and_bounded() {
        use bindu_engine::sse::{SseDecoder, SseFrames};
        let mut s = SseFrames::new(SseDecoder::new(100).lenient());
        s.push(b"data: {\"a\"");
        assert_eq!(s.next_event().unwrap(), None);
        s.push(b":1}\r\n\r\ndata: [DONE]\n");
        assert_eq!(s.next_event().unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(s.next_event().unwrap(), None);
        assert_eq!(s.finish().unwrap().as_deref(), Some("[DONE]"));
        assert_eq!(s.finish().unwrap(), None);
        s.push(&[b'x'; 101]);
        assert!(s.next_event().is_err());
    }

    #[test]
    fn chunks_deltas_and_errors() {
        let delta = r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(parse_line(delta), Some(Ok(Event::Delta("Hel".into()))));
        let role = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
        assert_eq!(parse_line(role), Some(Ok(Event::Delta(String::new()))));
        assert_eq!(parse_line("data: [DONE]"), Some(Ok(Event::Done)));
        assert_eq!(parse_line(": keep-alive"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(
            parse_line(r#"data: {"error":{"message":"overloaded"}}"#),
            Some(Ok(Event::Error("overloaded".into())))
        );
        assert!(matches!(parse_line("data: nope"), Some(Err(_))));
    }
}
