//! The `command` handler's reading of an agent process's stdout
//! (`bindu_workers::command::process::LineReader` over any chunking of the bytes, reads
//! dropped mid-line as a cancel does) and its parsing of each line
//! (`bindu_workers::command::protocol::Reply::parse`).
//!
//! Input: byte 0 picks the line limit (1-64 bytes, or 1 MiB), bytes 1-2 seed the chunking,
//! the rest is what the process printed.
//!
//! Asserts:
//! - no panic;
//! - the lines read are exactly those of a reference splitter: `\n`-terminated, one trailing
//!   `\r` dropped, a last unterminated line counted, a line longer than the limit refused
//!   (`TooLong`, never returned), bytes that are not UTF-8 refused (`NotUtf8`); so no line
//!   returned is over the limit or holds a `\n`, and nothing is lost by a dropped read;
//! - an accepted reply line is a JSON object whose `type` names the variant parsed, final
//!   exactly for the final types, and its parts are `parts`, else `text`, else none.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bindu_workers::command::process::{LineError, LineReader};
use bindu_workers::command::protocol::{parts_of, Reply};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` in pseudo-random chunks, now and then not ready yet.
struct Trickle<'a> {
    data: &'a [u8],
    rng: u32,
    pending: bool,
}

fn next(rng: &mut u32) -> u32 {
    // xorshift32; never 0 (seeded with a non-zero value).
    *rng ^= *rng << 13;
    *rng ^= *rng >> 17;
    *rng ^= *rng << 5;
    *rng
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pending {
            this.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let r = next(&mut this.rng);
        this.pending = r & 1 == 1;
        let n = ((r >> 1) % 17 + 1) as usize;
        let n = n.min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Line(String),
    End,
    TooLong,
    NotUtf8,
}

/// What the reader must produce, up to its first refusal.
fn reference(data: &[u8], max: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let (raw, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        if !terminated && (raw.is_empty() || raw == b"\r") {
            out.push(Outcome::End);
            return out;
        }
        if raw.len() > max {
            out.push(Outcome::TooLong);
            return out;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(line) {
            Ok(s) => out.push(Outcome::Line(s.to_string())),
            Err(_) => {
                out.push(Outcome::NotUtf8);
                return out;
            }
        }
        if !terminated {
            out.push(Outcome::End);
            return out;
        }
        rest = &rest[raw.len() + 1..];
    }
}

fn read_all(data: &[u8], max: usize, seed: u32) -> Vec<Outcome> {
    let mut rng = seed | 1;
    let mut reader = LineReader::new(Trickle {
        data,
        rng: seed.rotate_left(16) | 1,
        pending: false,
    });
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    loop {
        let result = 'read: loop {
            // Poll a read a few times, then drop it (a cancel) and start another.
            let mut read = Box::pin(reader.read_line(max));
            for _ in 0..(next(&mut rng) % 4 + 1) {
                if let Poll::Ready(r) = read.as_mut().poll(&mut cx) {
                    break 'read r;
                }
            }
        };
        let outcome = match result {
            Ok(Some(line)) => {
                assert!(
                    line.len() <= max,
                    "a line of {} bytes over {max}",
                    line.len()
                );
                assert!(!line.contains('\n'));
                Outcome::Line(line)
            }
            Ok(None) => Outcome::End,
            Err(LineError::TooLong(limit)) => {
                assert_eq!(limit, max);
                Outcome::TooLong
            }
            Err(LineError::NotUtf8) => Outcome::NotUtf8,
            Err(LineError::Io(e)) => panic!("no I/O error can happen here: {e}"),
        };
        let done = !matches!(outcome, Outcome::Line(_));
        out.push(outcome);
        if done {
            return out;
        }
    }
}

fn check_reply(line: &str) {
    let Ok(reply) = Reply::parse(line) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_str(line).expect("an accepted line is JSON");
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .expect("an accepted line has a string `type`");
    let (expected, parts) = match reply {
        Reply::Status { .. } => ("status", None),
        Reply::Chunk { text, parts } => ("chunk", Some((text, parts))),
        Reply::Result { text, parts, .. } => ("result", Some((text, parts))),
        Reply::InputRequired { .. } => ("input-required", None),
        Reply::AuthRequired { .. } => ("auth-required", None),
        Reply::Rejected { .. } => ("rejected", None),
        Reply::Error { .. } => ("error", None),
    };
    assert_eq!(kind, expected, "{line}");
    let reparsed = Reply::parse(line).expect("parsed once");
    assert_eq!(reparsed.is_final(), !matches!(kind, "status" | "chunk"));
    if let Some((text, parts)) = parts {
        let expected_len = match (&parts, &text) {
            (Some(p), _) => p.len(),
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        assert_eq!(parts_of(text, parts).len(), expected_len);
    }
}

fuzz_target!(|input: &[u8]| {
    let [limit, a, b, data @ ..] = input else {
        return;
    };
    let max = if *limit < 0x80 {
        usize::from(*limit % 64) + 1
    } else {
        1 << 20
    };
    let got = read_all(data, max, u32::from_le_bytes([*a, *b, *limit, 0x5a]));
    assert_eq!(got, reference(data, max), "limit {max}, data {data:?}");
    for outcome in &got {
        if let Outcome::Line(line) = outcome {
            if !line.trim().is_empty() {
                check_reply(line);
            }
        }
    }
});
