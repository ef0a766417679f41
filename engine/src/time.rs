//! Timestamps: the RFC 3339 form A2A uses (`2026-11-24T10:00:00.123Z`), and unix seconds
//! (signature timestamps, token expiries).

/// The current UTC time, millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Seconds since the unix epoch (0 if the clock is set before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
