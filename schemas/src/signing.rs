//! Canonical bytes of a DID-signed request (Bindu's scheme, byte for byte).
//!
//! The signer signs the UTF-8 of `{"body": <body>, "did": <did>, "timestamp": <t>}`: keys in
//! that order, `", "` and `": "` separators, the body decoded as UTF-8. Two string forms
//! exist: [`Form::Python`] (Bindu's verifier, `json.dumps` with `ensure_ascii`: everything
//! from U+007F up is `\uXXXX`, astral characters as surrogate pairs, lower-case hex) and
//! [`Form::Js`] (JavaScript signers: non-ASCII left as raw UTF-8).

/// How strings are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Python,
    Js,
}

fn push_escaped(out: &mut String, s: &str, form: Form) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if form == Form::Python && (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The bytes a caller signs. `body` must be valid UTF-8 (callers reject it otherwise).
pub fn signing_payload(body: &str, did: &str, timestamp: i64, form: Form) -> String {
    let mut out = String::with_capacity(body.len() + did.len() + 48);
    out.push_str("{\"body\": ");
    push_escaped(&mut out, body, form);
    out.push_str(", \"did\": ");
    push_escaped(&mut out, did, form);
    out.push_str(", \"timestamp\": ");
    out.push_str(&timestamp.to_string());
    out.push('}');
    out
}

/// What an A2A 1.0 HTTP+JSON request without a body signs in place of its (empty) body:
/// its method and its target exactly as on the request line (the origin form: path and raw
/// query, percent-encoding untouched), e.g. `GET /v1/tasks/abc?historyLength=2`. A request
/// with a body signs the body as sent; JSON-RPC (`POST /`) always does.
pub fn request_line(method: &str, target: &str) -> String {
    format!("{method} {target}")
}

/// How every signing envelope ([`signing_payload`], webhooks too) begins.
pub const ENVELOPE_PREFIX: &str = "{\"body\": ";

/// Whether `text` could be the signed bytes of a request or a webhook: an agent signing the
/// text of its results must never sign such a text with its key, or a caller could have it
/// sign a request in its name (send the envelope as a message to an echoing agent).
pub fn is_signing_envelope(text: &str) -> bool {
    text.starts_with(ENVELOPE_PREFIX)
}

/// Parses `X-DID-Timestamp` strictly: an optional `-` and 1-19 ASCII digits, nothing else.
pub fn parse_timestamp(header: &str) -> Option<i64> {
    let digits = header.strip_prefix('-').unwrap_or(header);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    header.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_envelope_is_recognised_and_ordinary_text_is_not() {
        for form in [Form::Python, Form::Js] {
            assert!(is_signing_envelope(&signing_payload(
                "{}", "did:x", 1, form
            )));
            assert!(is_signing_envelope(&signing_payload("", "", -5, form)));
        }
        for text in [
            "hello",
            "{\"body\":\"x\"}",
            " {\"body\": 1}",
            "{\"did\": 1}",
            "",
        ] {
            assert!(!is_signing_envelope(text), "{text}");
        }
    }

    #[test]
    fn escapes_like_python_json_dumps() {
        assert_eq!(
            signing_payload(
                "{\"test\": \"value\"}",
                "did:bindu:test",
                1000,
                Form::Python
            ),
            r#"{"body": "{\"test\": \"value\"}", "did": "did:bindu:test", "timestamp": 1000}"#
        );
        assert_eq!(
            signing_payload("hëllo 😀/\u{7f}", "d", -5, Form::Python),
            r#"{"body": "h\u00ebllo \ud83d\ude00/\u007f", "did": "d", "timestamp": -5}"#
        );
        assert_eq!(
            signing_payload("hëllo 😀", "d", 0, Form::Js),
            "{\"body\": \"hëllo 😀\", \"did\": \"d\", \"timestamp\": 0}"
        );
    }

    #[test]
    fn timestamps_are_strict() {
        assert_eq!(parse_timestamp("1000"), Some(1000));
        assert_eq!(parse_timestamp("-1"), Some(-1));
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "1_000",
            "١٠٠٠",
            "12345678901234567890",
            "1e3",
            "0x10",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }
}
