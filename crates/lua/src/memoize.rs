//! `kumo.memoize(f, {name=, ttl=, capacity=})`: caches `f`'s first result
//! by its arguments.
//!
//! The cache lives in Rust, keyed by `name`, so every Lua state of one
//! generation shares it (a look-up made by one pooled state serves the
//! others); a reload starts new caches, as KumoMTA's config epoch does.
//! Arguments and results cross as JSON, so only plain data (nil, booleans,
//! numbers, strings, tables of those) can be memoized.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value};

use crate::pool::Shared;

/// All caches of one generation, by name.
#[derive(Default)]
pub(crate) struct Caches(Mutex<HashMap<String, Arc<Cache>>>);

impl Caches {
    fn get_or_make(&self, name: &str, ttl: Duration, capacity: usize) -> Arc<Cache> {
        // Invariant: never held across a call into Lua.
        let mut caches = self.0.lock().expect("memoize lock");
        caches
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Cache {
                    ttl,
                    capacity: capacity.max(1),
                    entries: Mutex::default(),
                })
            })
            .clone()
    }
}

/// One named cache.
pub(crate) struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, serde_json::Value)>>,
}

impl Cache {
    fn get(&self, key: &str, now: Instant) -> Option<serde_json::Value> {
        let entries = self.entries.lock().expect("memoize lock");
        entries
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: serde_json::Value, now: Instant) {
        let mut entries = self.entries.lock().expect("memoize lock");
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= self.capacity {
            // Full of live entries: drop the one closest to expiry.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (e, _))| *e)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now + self.ttl, value));
    }
}

/// `kumo.memoize(f, params)`.
pub(crate) fn memoize(lua: &Lua, (f, params): (Function, Table)) -> mlua::Result<Function> {
    let name: String = params
        .get::<Option<String>>("name")?
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: 'name' is required"))?;
    let ttl = match params.get::<Value>("ttl")? {
        Value::Integer(n) if n >= 0 => Duration::from_secs(n as u64),
        Value::Number(n) if n >= 0.0 => Duration::from_secs_f64(n),
        Value::String(s) => parse_duration(&s.to_str()?).map_err(mlua::Error::runtime)?,
        _ => {
            return Err(mlua::Error::runtime(
                "kumo.memoize: 'ttl' must be seconds or e.g. '5 minutes'",
            ))
        }
    };
    let capacity = params.get::<Option<usize>>("capacity")?.unwrap_or(1024);
    let shared = lua
        .app_data_ref::<Arc<Shared>>()
        .ok_or_else(|| mlua::Error::runtime("kumo.memoize: no policy context"))?
        .clone();
    let cache = shared.memo.get_or_make(&name, ttl, capacity);
    lua.create_function(move |lua, args: MultiValue| {
        let mut key_parts = Vec::with_capacity(args.len());
        for arg in args.iter() {
            key_parts.push(lua.from_value::<serde_json::Value>(arg.clone())?);
        }
        let key = serde_json::Value::Array(key_parts).to_string();
        let now = Instant::now();
        if let Some(hit) = cache.get(&key, now) {
            return to_lua(lua, &hit);
        }
        let result: Value = f.call(args)?;
        let stored: serde_json::Value = lua.from_value(result.clone())?;
        cache.put(key, stored, now);
        Ok(result)
    })
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
