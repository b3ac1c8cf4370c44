//! Counts, marks and bans in Redis, shared by every portcullis instance
//! that points at the same server, so that a guesser spreading attempts
//! over instances behind a load balancer is counted once.
//!
//! Layout (all keys under `portcullis:`): a counter is one key per fixed
//! bucket, `c:<key>:<bucket>`, `INCR`ed and expiring after two windows, and
//! read with the previous bucket (see [`crate::MemoryBackend`] for the
//! sliding estimate); a mark is `m:<key>` with a `PX` expiry; bans are one
//! hash `bans`, address → JSON [`Ban`], expired entries dropped on read.
//!
//! Every call is bounded by [`TIMEOUT`]. When Redis does not answer, calls
//! fail fast for [`RETRY_AFTER`] instead of waiting again, then try a new
//! connection (so Redis that comes back is used again), and the
//! [`crate::Limiter`] counts locally meanwhile (fail open for counting;
//! credentials are never checked here).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::memory::{bucket_of, estimate};
use crate::sending::{Consumed, Quota};
use crate::{Ban, BoxFuture, Counter, LimitsBackend, LimitsError, Timestamp};

/// The longest a Redis call may take before we count locally.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, how long calls fail at once before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

const PREFIX: &str = "portcullis:";

/// [`crate::sending::decide`] in Lua: KEYS are each quota's current and
/// previous bucket; ARGV is `now`, then window, limit (-1: none) and amount
/// per quota. Returns the 1-based index of the refusing quota (0: none),
/// then each count. Adds only when nothing refuses.
const CONSUME_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local n = #KEYS / 2
local used, refused = {}, 0
for i = 1, n do
  local w = tonumber(ARGV[3 * i - 1])
  local limit = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local u = cur + math.ceil(prev * (w - now % w) / w)
  used[i] = u
  if refused == 0 and limit >= 0 then
    if (amount > 0 and u + amount > limit) or (amount == 0 and u >= limit) then
      refused = i
    end
  end
end
if refused == 0 then
  for i = 1, n do
    local w = tonumber(ARGV[3 * i - 1])
    local amount = tonumber(ARGV[3 * i + 1])
    if amount > 0 then
      redis.call('INCRBY', KEYS[2 * i - 1], amount)
      redis.call('PEXPIRE', KEYS[2 * i - 1], 2 * w)
      used[i] = used[i] + amount
    end
  end
end
local out = {refused}
for i = 1, n do out[i + 1] = used[i] end
return out
"#;
const BANS: &str = "portcullis:bans";

/// A Redis connection (made lazily, re-made after failures).
pub struct RedisBackend {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Until when calls fail without trying (after a failure).
    resting_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> LimitsError {
    LimitsError::Unavailable(error.to_string())
}

impl RedisBackend {
    /// Checks the URL; connects on first use.
    pub fn new(url: &str) -> Result<RedisBackend, LimitsError> {
        Ok(RedisBackend {
            client: redis::Client::open(url).map_err(unavailable)?,
            connection: tokio::sync::Mutex::new(None),
            resting_until: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, LimitsError> {
        // Held only while connecting; calls use a clone of the manager.
        let mut slot = self.connection.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let made = tokio::time::timeout(TIMEOUT, ConnectionManager::new(self.client.clone()))
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        *slot = Some(made.clone());
        Ok(made)
    }

    /// Runs `pipe` with the timeout; a failure rests the backend.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, LimitsError> {
        let resting = *self.resting_until.lock().unwrap_or_else(|p| p.into_inner());
        if resting.is_some_and(|until| Instant::now() < until) {
            // Not a new failure: a refusal here must not extend the rest,
            // or steady traffic would keep Redis out for good (seen: Redis
            // restarted, the server counted locally until it restarted).
            return Err(unavailable("not retrying yet after a failure"));
        }
        let result = async {
            let mut connection = self.connection().await?;
            tokio::time::timeout(TIMEOUT, pipe.query_async::<T>(&mut connection))
                .await
                .map_err(|_| unavailable("timed out"))?
                .map_err(unavailable)
        }
        .await;
        if let Err(error) = &result {
            tracing::debug!(%error, "redis call failed");
            *self.resting_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + RETRY_AFTER);
            // A fresh connection at the next try, rather than a manager
            // whose own reconnection may have given up during the outage.
            *self.connection.lock().await = None;
        }
        result
    }

    async fn count(
        &self,
        counters: &[Counter],
        now: Timestamp,
        add: bool,
    ) -> Result<Vec<u64>, LimitsError> {
        let mut pipe = redis::pipe();
        for c in counters {
            let bucket = bucket_of(c.window, now);
            let current = format!("{PREFIX}c:{}:{bucket}", c.key);
            let previous = format!("{PREFIX}c:{}:{}", c.key, bucket.wrapping_sub(1));
            if add {
                let ttl = (c.window.as_millis() as u64).max(1) * 2;
                pipe.incr(&current, 1u64)
                    .pexpire(&current, ttl as i64)
                    .ignore();
            } else {
                pipe.get(&current);
            }
            pipe.get(&previous);
        }
        let values: Vec<Option<u64>> = self.query(pipe).await?;
        Ok(counters
            .iter()
            .zip(values.chunks(2))
            .map(|(c, pair)| {
                let current = pair.first().copied().flatten().unwrap_or(0);
                let previous = pair.get(1).copied().flatten().unwrap_or(0);
                estimate(current, previous, c.window, now)
            })
            .collect())
    }

    /// Sending quotas, checked and counted in one script run on the
    /// server: one round trip, atomic across instances.
    async fn consume_quotas(
        &self,
        quotas: &[Quota],
        now: Timestamp,
    ) -> Result<Consumed, LimitsError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(CONSUME_SCRIPT).arg(quotas.len() * 2);
        for q in quotas {
            let bucket = bucket_of(q.window, now);
            eval.arg(format!("{PREFIX}c:{}:{bucket}", q.key))
                .arg(format!("{PREFIX}c:{}:{}", q.key, bucket.wrapping_sub(1)));
        }
        eval.arg(now.millis());
        for q in quotas {
            let limit = match q.limit {
                u64::MAX => -1i64,
                n => i64::try_from(n).unwrap_or(i64::MAX),
            };
            eval.arg((q.window.as_millis() as u64).max(1))
                .arg(limit)
                .arg(q.amount);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(eval);
        let (values,): (Vec<u64>,) = self.query(pipe).await?;
        let refused = values.first().copied().unwrap_or(0);
        Ok(Consumed {
            refused: (refused > 0).then(|| refused as usize - 1),
            counts: values.into_iter().skip(1).collect(),
        })
    }

    async fn all_bans(&self, now: Timestamp) -> Result<Vec<Ban>, LimitsError> {
        let mut pipe = redis::pipe();
        pipe.hvals(BANS);
        let (values,): (Vec<String>,) = self.query(pipe).await?;
        let mut bans: Vec<Ban> = values
            .iter()
            .filter_map(|json| serde_json::from_str::<Ban>(json).ok())
            .collect();
        let expired: Vec<String> = bans
            .iter()
            .filter(|b| !b.in_force(now))
            .map(|b| b.ip.to_string())
            .collect();
        if !expired.is_empty() {
            let mut pipe = redis::pipe();
            pipe.hdel(BANS, expired).ignore();
            self.query::<()>(pipe).await?;
        }
        bans.retain(|b| b.in_force(now));
        bans.sort_by_key(|b| b.created_ms);
        Ok(bans)
    }
}

impl LimitsBackend for RedisBackend {
    fn hit<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>> {
        Box::pin(self.count(counters, now, true))
    }

    fn consume<'a>(
        &'a self,
        quotas: &'a [Quota],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Consumed, LimitsError>> {
        Box::pin(self.consume_quotas(quotas, now))
    }

    fn peek<'a>(
        &'a self,
        counters: &'a [Counter],
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<u64>, LimitsError>> {
        Box::pin(self.count(counters, now, false))
    }

    fn mark<'a>(
        &'a self,
        key: &'a str,
        until: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), LimitsError>> {
        Box::pin(async move {
            let ttl = until.millis().saturating_sub(now.millis()).max(1);
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(format!("{PREFIX}m:{key}"))
                .arg(1)
                .arg("PX")
                .arg(ttl)
                .ignore();
            self.query::<()>(pipe).await
        })
    }

    fn marked<'a>(
        &'a self,
        key: &'a str,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, LimitsError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.exists(format!("{PREFIX}m:{key}"));
            let (exists,): (bool,) = self.query(pipe).await?;
            Ok(exists)
        })
    }

    fn ban(&self, ban: Ban) -> BoxFuture<'_, Result<(), LimitsError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&ban).map_err(unavailable)?;
            let mut pipe = redis::pipe();
            pipe.hset(BANS, ban.ip.to_string(), json).ignore();
            self.query::<()>(pipe).await
        })
    }

    fn unban(&self, ip: IpAddr) -> BoxFuture<'_, Result<bool, LimitsError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.hdel(BANS, ip.to_string());
            let (removed,): (u64,) = self.query(pipe).await?;
            Ok(removed > 0)
        })
    }

    fn banned(
        &self,
        ip: IpAddr,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<Ban>, LimitsError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.hget(BANS, ip.to_string());
            let (json,): (Option<String>,) = self.query(pipe).await?;
            Ok(json
                .and_then(|j| serde_json::from_str::<Ban>(&j).ok())
                .filter(|b| b.in_force(now)))
        })
    }

    fn bans(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<Ban>, LimitsError>> {
        Box::pin(self.all_bans(now))
    }
}
