//! `kumo.memoize(f, {name=, ttl=, capacity=, …})`: caches `f`'s result
//! by its arguments, with KumoMTA's options:
//!
//! - `invalidate_with_epoch = true`: the cache is emptied when the policy
//!   reloads (KumoMTA: when the configuration epoch changes). Without it a
//!   cache outlives reloads, keyed by its `name`, as in KumoMTA; a reload
//!   that declares it with other options starts it afresh.
//! - `populate_timeout = '2 seconds'`: the longest one call of `f` may run
//!   (past it the call fails as a hook past its deadline does), and the
//!   longest a caller waits for another state's call of `f` for the same
//!   arguments. Calls are single-flight: while one state asks the store,
//!   the others wait for its answer instead of asking too.
//! - `allow_stale_reads = true`: an expired answer is served while
//!   another state refreshes it, and, when the refresh fails (the store is
//!   down: `f` raised an error or ran past `populate_timeout`), served
//!   instead of the error for up to `max_stale` after it expired
//!   (portcullis's option; default the `ttl`). That is what an AUTH cache
//!   needs: users who logged in recently still can while the store is
//!   down, and a user no cache has seen gets the error (`454`).
//!
//! The cache lives in Rust, keyed by `name`, so every Lua state of the
//! policy shares it (a look-up made by one pooled state serves the others).
//! Arguments and results cross as JSON, so only plain data (nil, booleans,
//! numbers, strings, tables of those) can be memoized; an error is never
//! cached.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value};

use crate::pool::Shared;
use crate::sandbox::CallDeadline;

/// A cache's options, as the script gave them.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    ttl: Duration,
    capacity: usize,
    invalidate_with_epoch: bool,
    populate_timeout: Option<Duration>,
    allow_stale_reads: bool,
    max_stale: Duration,
}

/// All caches of one policy, by name; they outlive reloads.
#[derive(Default)]
pub(crate) struct Caches(Mutex<HashMap<String, Arc<Cache>>>);

impl Caches {
    fn get_or_make(&self, name: &str, params: Params) -> Arc<Cache> {
        // Invariant: never held across a call into Lua.
        let mut caches = self.0.lock().expect("memoize lock");
        match caches.get(name) {
            Some(cache) if cache.params == params => cache.clone(),
            _ => {
                let cache = Arc::new(Cache {
                    params,
                    entries: Mutex::default(),
                    populated: Condvar::new(),
                });
                caches.insert(name.to_string(), cache.clone());
                cache
            }
        }
    }

    /// A reload: empties the caches declared `invalidate_with_epoch`.
    pub fn new_epoch(&self) {
        let caches = self.0.lock().expect("memoize lock");
        for cache in caches.values() {
            if cache.params.invalidate_with_epoch {
                cache.entries.lock().expect("memoize lock").clear();
            }
        }
    }
}

/// One key's slot.
#[derive(Default)]
struct Entry {
    /// The last answer and when it expires.
    value: Option<(Instant, serde_json::Value)>,
    /// A state is calling `f` for this key now.
    populating: bool,
}

/// One named cache.
pub(crate) struct Cache {
    params: Params,
    entries: Mutex<HashMap<String, Entry>>,
    /// Signalled when a call of `f` ends.
    populated: Condvar,
}

/// Another state's call of `f` for the same key did not finish in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for another call to populate it")]
struct PopulateTimedOut;

/// What a look-up found.
enum Found {
    Fresh(serde_json::Value),
    /// Call `f`; the expired answer, if one may still be served.
    Populate(Option<serde_json::Value>),
}

impl Cache {
    /// A fresh answer, or the duty to populate (single-flight: waits, up to
    /// `wait`, while another state populates the key).
    fn find(&self, key: &str, wait: Duration) -> Result<Found, PopulateTimedOut> {
        let until = Instant::now() + wait;
        let mut entries = self.entries.lock().expect("memoize lock");
        loop {
            let now = Instant::now();
            let stale_until = |expires: Instant| expires + self.params.max_stale;
            let entry = entries.entry(key.to_string()).or_default();
            let stale = match &entry.value {
                Some((expires, value)) if *expires > now => return Ok(Found::Fresh(value.clone())),
                Some((expires, value))
                    if self.params.allow_stale_reads && stale_until(*expires) > now =>
                {
                    Some(value.clone())
                }
                _ => None,
            };
            if !entry.populating {
                entry.populating = true;
                return Ok(Found::Populate(stale));
            }
            if let Some(stale) = stale {
                return Ok(Found::Fresh(stale));
            }
            if now >= until {
                return Err(PopulateTimedOut);
            }
            entries = self
                .populated
                .wait_timeout(entries, until - now)
                .expect("memoize lock")
                .0;
        }
    }

    /// The call of `f` ended: stores its answer (if any) and wakes waiters.
    fn finish(&self, key: &str, answer: Option<serde_json::Value>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("memoize lock");
        if let Some(value) = answer {
            let keep = self.params.max_stale;
            entries.retain(|k, e| {
                k == key || e.populating || e.value.as_ref().is_some_and(|(x, _)| *x + keep > now)
            });
            if entries.len() > self.params.capacity {
                // Full: drop the entry closest to expiry.
                if let Some(oldest) = entries
                    .iter()
                    .filter(|(k, e)| k.as_str() != key && !e.populating)
                    .min_by_key(|(_, e)| e.value.as_ref().map(|(x, _)| *x))
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
            entries.entry(key.to_string()).or_default().value =
                Some((now + self.params.ttl, value));
        }
        if let Some(entry) = entries.get_mut(key) {
            entry.populating = false;
            if entry.value.is_none() {
                entries.remove(key);
            }
        }
        self.populated.notify_all();
    }
}

fn duration_param(params: &Table, name: &str) -> mlua::Result<Option<Duration>> {
    match params.get::<Value>(name)? {
        Value::Nil => Ok(None),
        Value::Integer(n) if n >= 0 => Ok(Some(Duration::from_secs(n as u64))),
        Value::Number(n) if n >= 0.0 && n.is_finite() => Ok(Some(Duration::from_secs_f64(n))),
        Value::String(s) => parse_duration(&s.to_str()?)
            .map(Some)
            .map_err(mlua::Error::runtime),
        _ => Err(mlua::Error::runtime(format!(
            "kumo.memoize: '{name}' must be seconds or e.g. '5 minutes'"
        ))),
    }
}

/// `kumo.memoize(f, params)`.
pub(crate) fn memoize(lua: &Lua, (f, params): (Function, Table)) -> mlua::Result<Function> {
    let name: String = params
        .get::<Option<String>>("name")?
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: 'name' is required"))?;
    let ttl = duration_param(&params, "ttl")?
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: 'ttl' is required"))?;
    let params = Params {
        ttl,
        capacity: params
            .get::<Option<usize>>("capacity")?
            .unwrap_or(1024)
            .max(1),
        invalidate_with_epoch: params
            .get::<Option<bool>>("invalidate_with_epoch")?
            .unwrap_or(false),
        populate_timeout: duration_param(&params, "populate_timeout")?,
        allow_stale_reads: params
            .get::<Option<bool>>("allow_stale_reads")?
            .unwrap_or(false),
        max_stale: duration_param(&params, "max_stale")?.unwrap_or(ttl),
    };
    let shared = lua
        .app_data_ref::<Arc<Shared>>()
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: no policy context"))?
        .clone();
    let cache = shared.memo.get_or_make(&name, params);
    lua.create_function(move |lua, args: MultiValue| {
        let mut key_parts = Vec::with_capacity(args.len());
        for arg in args.iter() {
            key_parts.push(lua.from_value::<serde_json::Value>(arg.clone())?);
        }
        let key = serde_json::Value::Array(key_parts).to_string();
        let left = CallDeadline::remaining(lua, Duration::from_secs(5));
        let wait = cache.params.populate_timeout.map_or(left, |t| t.min(left));
        let stale = match cache.find(&key, wait) {
            Ok(Found::Fresh(hit)) => return to_lua(lua, &hit),
            Ok(Found::Populate(stale)) => stale,
            Err(e) => return Err(mlua::Error::runtime(format!("kumo.memoize {name}: {e}"))),
        };
        let result = populate(lua, &f, args, cache.params.populate_timeout).and_then(|v| {
            let stored: serde_json::Value = lua.from_value(v.clone())?;
            Ok((v, stored))
        });
        match result {
            Ok((value, stored)) => {
                cache.finish(&key, Some(stored));
                Ok(value)
            }
            Err(error) => {
                cache.finish(&key, None);
                match stale {
                    Some(stale) => {
                        tracing::warn!(target: "portcullis::policy", cache = %name, %error, "memoize: the look-up failed; serving the last answer (allow_stale_reads)");
                        to_lua(lua, &stale)
                    }
                    None => Err(error),
                }
            }
        }
    })
}

/// Calls `f`, with the call's deadline brought forward to
/// `populate_timeout` from now, and put back after.
fn populate(
    lua: &Lua,
    f: &Function,
    args: MultiValue,
    timeout: Option<Duration>,
) -> mlua::Result<Value> {
    let Some(timeout) = timeout else {
        return f.call(args);
    };
    let Some(deadline) = lua.app_data_ref::<CallDeadline>().map(|d| d.0.clone()) else {
        return f.call(args);
    };
    // Invariant: the lock is never held across a call into Lua.
    let before = *deadline.lock().expect("deadline lock");
    let narrowed = Instant::now() + timeout;
    if before.is_none_or(|b| narrowed < b) {
        *deadline.lock().expect("deadline lock") = Some(narrowed);
    }
    let result = f.call(args);
    *deadline.lock().expect("deadline lock") = before;
    result
}

/// JSON back to Lua: `null` is `nil`, arrays are plain tables.
fn to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<Value> {
    lua.to_value_with(value, lua_options())
}

/// How plain data goes back into Lua everywhere in this crate.
pub(crate) fn lua_options() -> mlua::SerializeOptions {
    mlua::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false)
}

/// A `ttl` that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use seconds or e.g. '5 minutes', '30s', '1h'")]
pub(crate) struct DurationError(String);

/// `'5 minutes'`, `'30 seconds'`, `'1h'`, `'90'` (seconds), as KumoMTA
/// writes durations: a bare number is seconds, anything else goes through
/// `humantime`, the parser the config's durations use too.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|_| DurationError(text.to_string()))
}
