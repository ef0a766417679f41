//! Reading a streamed chat completion: server-sent events whose `data:` lines carry
//! `chat.completion.chunk` objects, ended by `data: [DONE]`.

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

/// Splits a byte stream into lines, bounded in length.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes; returns the complete lines now available (without `\r\n` / `\n`), or an
    /// error when one line grows past `max` bytes.
    pub fn push(&mut self, bytes: &[u8], max: usize) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if self.buf.len() > max {
            return Err(format!("the model sent a line longer than {max} bytes"));
        }
        Ok(lines)
    }

    /// Whatever is left after the stream ended (a last line without `\n`).
    pub fn rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let text = String::from_utf8_lossy(&rest).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

/// Interprets one SSE line; `None` for lines that carry nothing for us (blank lines,
/// comments, `event:`/`id:` fields).
pub fn parse_line(line: &str) -> Option<Result<Event, String>> {
    let data = line.strip_prefix("data:")?.trim();
    if data == "[DONE]" {
        return Some(Ok(Event::Done));
    }
    Some(parse_chunk(data))
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
        let mut s = LineSplitter::default();
        assert!(s.push(b"data: {\"a\"", 100).unwrap().is_empty());
        assert_eq!(
            s.push(b":1}\r\n\r\ndata: [DONE]\n", 100).unwrap(),
            ["data: {\"a\":1}", "", "data: [DONE]"]
        );
        assert_eq!(s.rest(), None);
        assert!(s.push(&[b'x'; 101], 100).is_err());
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
