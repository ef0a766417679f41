//! The buckets and open-task sets every replica shares, in Redis: each check is one Lua
//! script, so refilling and taking a token (or pruning, counting and adding a run) is one
//! atomic step however many replicas check at once. Times are Redis's (`TIME`), so the
//! replicas' clocks do not matter. Keys expire once idle: a full bucket or an empty set is
//! the same as none.

use std::time::Duration;

use fred::types::Value;

use crate::auth::shared::RedisState;

/// `KEYS[1]`: a hash `{tokens, at}` (at: µs); `ARGV`: rate per second, burst. Answers 0
/// when a token was taken, else the µs until one is back.
const TAKE: &str = r#"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(burst * 1000 / rate) + 1000))
return wait
"#;

/// `KEYS[1]`: a sorted set of runs scored by when they were counted (ms); `ARGV`: the
/// run, the most open at once, the time-to-live (ms). Answers 1 when the run counts.
const OPEN: &str = r#"
local max = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - ttl))
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return 1
"#;

const CLOSE: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// Takes a token of `key`'s shared bucket: `None` when taken, else how long until one is
/// back.
pub(super) async fn take(
    redis: &RedisState,
    key: &str,
    rate: f64,
    burst: u32,
) -> Result<Option<Duration>, String> {
    let bucket = format!("rate:{key}");
    let wait = redis
        .eval(
            TAKE,
            &[&bucket],
            vec![Value::from(rate.to_string()), Value::from(burst as i64)],
        )
        .await?;
    match wait.as_i64() {
        Some(0) => Ok(None),
        Some(us) => Ok(Some(Duration::from_micros(us.max(1) as u64))),
        None => Err(format!("unexpected answer to the rate script: {wait:?}")),
    }
}

/// Counts `task` open for `key` unless `max` are; true when it counts.
pub(super) async fn open(
    redis: &RedisState,
    key: &str,
    task: &str,
    max: u32,
    ttl: Duration,
) -> Result<bool, String> {
    let set = format!("open:{key}");
    let counted = redis
        .eval(
            OPEN,
            &[&set],
            vec![
                Value::from(task),
                Value::from(max as i64),
                Value::from(ttl.as_millis().min(i64::MAX as u128) as i64),
            ],
        )
        .await?;
    match counted.as_i64() {
        Some(n) => Ok(n == 1),
        None => Err(format!(
            "unexpected answer to the open-task script: {counted:?}"
        )),
    }
}

pub(super) async fn close(redis: &RedisState, key: &str, task: &str) -> Result<(), String> {
    let set = format!("open:{key}");
    redis
        .eval(CLOSE, &[&set], vec![Value::from(task)])
        .await
        .map(|_| ())
}
