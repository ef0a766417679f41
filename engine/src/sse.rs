//! Reading server-sent events, the client side: [`SseDecoder`] frames a byte stream into the
//! `data` of each event (a `tokio_util` codec over a bounded [`LinesCodec`]), so the CLI
//! client, the openai handler, the load generator and the tests read streams one way.
//!
//! - An event ends at a blank line; its `data:` lines are joined with `\n` (one leading
//!   space after the colon is dropped). Comments (`: keep-alive`), other fields and events
//!   without data are skipped.
//! - Every line, and every event's data, is at most `max_bytes` long: a longer one is an
//!   error, never an unbounded buffer.
//! - [`SseFrames`] holds the decoder with its buffer for readers fed chunk by chunk;
//!   [`events`] reads a whole body.
//! - At the end of the stream an event without its blank line is dropped (the standard), or
//!   delivered when [`SseDecoder::lenient`] (servers that end on a last `data:` line).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// A line or an event's data grew past the limit (bytes).
    #[error("the stream sent an event or line longer than {0} bytes")]
    TooLong(usize),
    /// Reading failed, or a line is not UTF-8.
    #[error("reading the stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames a byte stream into the data of each event.
#[derive(Debug)]
pub struct SseDecoder {
    lines: LinesCodec,
    max_bytes: usize,
    data: String,
    has_data: bool,
    lenient: bool,
}

impl SseDecoder {
    /// Lines and event data of at most `max_bytes` each.
    pub fn new(max_bytes: usize) -> SseDecoder {
        SseDecoder {
            lines: LinesCodec::new_with_max_length(max_bytes),
            max_bytes,
            data: String::new(),
            has_data: false,
            lenient: false,
        }
    }

    /// Also delivers an event that the end of the stream cut before its blank line.
    pub fn lenient(mut self) -> SseDecoder {
        self.lenient = true;
        self
    }

    /// Takes one line; the finished event's data when the line ends one.
    fn line(&mut self, line: &str) -> Result<Option<String>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            return Ok(Some(std::mem::take(&mut self.data)));
        }
        let Some(value) = line.strip_prefix("data") else {
            return Ok(None);
        };
        let value = match value.strip_prefix(':') {
            Some(v) => v.strip_prefix(' ').unwrap_or(v),
            // `data` alone is a data line with an empty value.
            None if value.is_empty() => "",
            // Another field whose name starts with "data".
            None => return Ok(None),
        };
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(value);
        self.has_data = true;
        if self.data.len() > self.max_bytes {
            return Err(SseError::TooLong(self.max_bytes));
        }
        Ok(None)
    }

    fn lines_error(&self, e: LinesCodecError) -> SseError {
        match e {
            LinesCodecError::MaxLineLengthExceeded => SseError::TooLong(self.max_bytes),
            LinesCodecError::Io(e) => SseError::Io(e),
        }
    }
}

impl Decoder for SseDecoder {
    type Item = String;
    type Error = SseError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, SseError> {
        loop {
            let line = match self.lines.decode(buf) {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.lines_error(e)),
            };
            if let Some(data) = self.line(&line)? {
                return Ok(Some(data));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, SseError> {
        if let Some(data) = self.decode(buf)? {
            return Ok(Some(data));
        }
        // A last line without its newline.
        let last = match self.lines.decode_eof(buf) {
            Ok(line) => line,
            Err(e) => return Err(self.lines_error(e)),
        };
        if let Some(line) = last {
            if let Some(data) = self.line(&line)? {
                return Ok(Some(data));
            }
        }
        let pending = std::mem::take(&mut self.data);
        let had = std::mem::take(&mut self.has_data);
        Ok((had && self.lenient).then_some(pending))
    }
}

/// An [`SseDecoder`] with its buffer, for readers that receive the body in chunks: push each
/// chunk, then take the events it completed; at the end, [`SseFrames::finish`].
#[derive(Debug)]
pub struct SseFrames {
    decoder: SseDecoder,
    buf: BytesMut,
    ended: bool,
}

impl SseFrames {
    pub fn new(decoder: SseDecoder) -> SseFrames {
        SseFrames {
            decoder,
            buf: BytesMut::new(),
            ended: false,
        }
    }

    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The body ended: what is buffered is all there is.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether [`SseFrames::end`] was called.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next complete event's data, if the chunks so far hold one (after the end, the
    /// events left, one per call, then `None`).
    pub fn next_event(&mut self) -> Result<Option<String>, SseError> {
        if self.ended {
            self.decoder.decode_eof(&mut self.buf)
        } else {
            self.decoder.decode(&mut self.buf)
        }
    }

    /// [`SseFrames::end`], then [`SseFrames::next_event`].
    pub fn finish(&mut self) -> Result<Option<String>, SseError> {
        self.end();
        self.next_event()
    }

    /// Bytes received and not yet framed into an event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Whether a response's `Content-Type` is `text/event-stream` (a stream, not a JSON answer).
pub fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// The data of every event in a complete stream body (events cut by the end are dropped).
pub fn events(body: &str, max_bytes: usize) -> Result<Vec<String>, SseError> {
    let mut frames = SseFrames::new(SseDecoder::new(max_bytes));
    frames.push(body.as_bytes());
    let mut out = Vec::new();
    while let Some(data) = frames.finish()? {
        out.push(data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut SseDecoder, buf: &mut BytesMut, bytes: &[u8]) -> Vec<String> {
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(e) = d.decode(buf).expect("ok") {
            out.push(e);
        }
        out
    }

    #[test]
    fn events_are_framed_across_reads() {
        let mut d = SseDecoder::new(100);
        let mut buf = BytesMut::new();
        assert!(feed(&mut d, &mut buf, b"data: {\"a\"").is_empty());
        assert!(
            feed(&mut d, &mut buf, b":1}\r\n").is_empty(),
            "no blank line yet"
        );
        assert_eq!(
            feed(
                &mut d,
                &mut buf,
                b"\r\n: keep-alive\n\nevent: x\nid: 1\ndata:[DONE]\n\n"
            ),
            ["{\"a\":1}", "[DONE]"]
        );
        assert_eq!(
            feed(&mut d, &mut buf, b"data: one\ndata: two\n\nrest"),
            ["one\ntwo"],
            "data lines join"
        );
        assert_eq!(
            d.decode_eof(&mut buf).expect("ok"),
            None,
            "`rest` has no data"
        );
    }

    #[test]
    fn event_blocks_end_at_a_blank_line() {
        assert_eq!(events("data: x\n\nrest", 100).expect("ok"), ["x"]);
        assert_eq!(events("data: x\r\n\r\n", 100).expect("ok"), ["x"]);
        assert!(events("data: x\n", 100).expect("ok").is_empty());
        assert!(events("", 100).expect("ok").is_empty());
        let mut lenient = SseDecoder::new(100).lenient();
        let mut buf = BytesMut::from(&b"data: x\n\ndata: last"[..]);
        assert_eq!(
            lenient.decode_eof(&mut buf).expect("ok").as_deref(),
            Some("x")
        );
        assert_eq!(
            lenient.decode_eof(&mut buf).expect("ok").as_deref(),
            Some("last"),
            "a last line without its newline counts"
        );
        assert_eq!(lenient.decode_eof(&mut buf).expect("ok"), None);
    }

    #[test]
    fn lines_and_events_are_bounded() {
        let mut d = SseDecoder::new(100);
        let mut buf = BytesMut::from(&[b'x'; 101][..]);
        assert!(matches!(d.decode(&mut buf), Err(SseError::TooLong(100))));
        let mut d = SseDecoder::new(100);
        let line = format!("data: {}\n", "y".repeat(60));
        let mut buf = BytesMut::from(format!("{line}{line}").as_bytes());
        assert!(
            matches!(d.decode(&mut buf), Err(SseError::TooLong(100))),
            "two 60-byte data lines make a 121-byte event"
        );
        let mut d = SseDecoder::new(100);
        let mut buf = BytesMut::from(&b"data: \xff\n\n"[..]);
        assert!(matches!(d.decode(&mut buf), Err(SseError::Io(_))));
    }
}
