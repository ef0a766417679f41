//! Timestamps in the RFC 3339 form A2A uses (`2026-11-24T10:00:00.123Z`).

/// The current UTC time, millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
