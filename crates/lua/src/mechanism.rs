//! SASL mechanisms written in Lua: `portcullis.mechanism('X-OTP', f)`.
//!
//! The script declares a name and one function; portcullis advertises the
//! name in EHLO's `AUTH` (under TLS, like every mechanism) and calls the
//! function once per round with `auth {mechanism, step, response}` and the
//! usual `conn` table. The function answers `portcullis.reply('text')` to
//! send a `334` challenge (the session base64-encodes it and calls the
//! function again with the client's decoded answer and `step + 1`), or
//! `accept{user=…}` / `reject{…}` / `defer{…}` as `smtp_server_auth` does.
//!
//! A mechanism function runs like any hook: on a pooled state, so a Lua
//! table set in one round is gone in the next. What must survive between
//! rounds goes in `conn.meta:set_meta(…)`, which is plain data kept per
//! connection. The session, not the script, bounds the rounds and the size
//! of each answer.

use mlua::{Function, Lua, Table, Value};
use portcullis_sasl::{Mechanism, Secret};

use crate::request::{ConnFacts, ConnMeta};
use crate::verdict::{self, Verdict};

/// The registry table holding mechanism functions, keyed by name.
const MECHANISMS: &str = "portcullis.mechanisms";

/// Longest mechanism name (RFC 4422 §3.1: 1 to 20 characters).
const MAX_NAME: usize = 20;

/// One round of a script mechanism.
#[derive(Debug)]
pub struct MechanismStep {
    /// The mechanism's name, upper case.
    pub mechanism: String,
    /// 1 for the `AUTH` command, then one more per answered challenge.
    pub step: u32,
    /// The client's decoded answer (the initial response at step 1, if it
    /// sent one). A secret: never logged.
    pub response: Option<Secret>,
}

/// `portcullis.mechanism(name, f)` and `portcullis.reply(text)`.
pub(crate) fn install(lua: &Lua, portcullis: &Table) -> mlua::Result<()> {
    lua.set_named_registry_value(MECHANISMS, lua.create_table()?)?;
    let declare = lua.create_function(|lua, (name, handler): (String, Function)| {
        let name = checked_name(&name).map_err(mlua::Error::runtime)?;
        let table: Table = lua.named_registry_value(MECHANISMS)?;
        if table.contains_key(name.as_str())? {
            return Err(mlua::Error::runtime(format!(
                "portcullis.mechanism: '{name}' is already declared"
            )));
        }
        table.set(name, handler)
    })?;
    portcullis.set("mechanism", declare)?;
    let reply = lua.create_function(|lua, challenge: mlua::String| {
        let t = lua.create_table()?;
        t.set("verdict", "reply")?;
        t.set("challenge", challenge)?;
        Ok(t)
    })?;
    portcullis.set("reply", reply)
}

/// A valid SASL name (upper case, `A-Z 0-9 - _`, at most 20) that is not
/// one portcullis implements itself.
/// Why a script may not declare a mechanism of this name.
#[derive(Debug, thiserror::Error)]
enum NameError {
    #[error("portcullis.mechanism: '{0}' is not a SASL mechanism name (A-Z, 0-9, '-', '_'; at most {MAX_NAME})")]
    Invalid(String),
    #[error("portcullis.mechanism: '{0}' is built in; a script may not replace it")]
    BuiltIn(String),
}

fn checked_name(name: &str) -> Result<String, NameError> {
    let upper = name.to_ascii_uppercase();
    let valid = (1..=MAX_NAME).contains(&upper.len())
        && upper
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(NameError::Invalid(name.to_string()));
    }
    if Mechanism::from_name(&upper).is_some() {
        return Err(NameError::BuiltIn(upper));
    }
    Ok(upper)
}

/// The names the script declared, sorted.
pub(crate) fn declared(lua: &Lua) -> mlua::Result<Vec<String>> {
    let table: Table = lua.named_registry_value(MECHANISMS)?;
    let mut names = table
        .pairs::<String, Value>()
        .map(|pair| pair.map(|(name, _)| name))
        .collect::<mlua::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Runs one round. The outer `Err` is a Lua error, the inner one an answer
/// the script should not have given.
pub(crate) fn call(
    lua: &Lua,
    step: &MechanismStep,
    conn: &ConnFacts,
    meta: &ConnMeta,
) -> mlua::Result<Result<Verdict, crate::verdict::BadAnswer>> {
    let table: Table = lua.named_registry_value(MECHANISMS)?;
    let Some(handler) = table.get::<Option<Function>>(step.mechanism.as_str())? else {
        return Ok(Err(format!(
            "no mechanism '{}' in the script",
            step.mechanism
        )
        .into()));
    };
    let auth = lua.create_table()?;
    auth.set("mechanism", step.mechanism.as_str())?;
    auth.set("step", step.step)?;
    if let Some(response) = &step.response {
        auth.set("response", lua.create_string(response.expose())?)?;
    }
    let answer: Value = handler.call((auth, conn.to_lua(lua, meta)?))?;
    if let Value::Table(t) = &answer {
        if t.get::<Option<String>>("verdict")?.as_deref() == Some("reply") {
            let challenge: mlua::String = t.get("challenge")?;
            return Ok(Ok(Verdict::Challenge(challenge.as_bytes().to_vec())));
        }
    }
    // An accept must name its user (an empty identity is a script
    // mistake); without `authz` the user acts as themself.
    Ok(verdict::from_general(lua, answer, "", None, false)
        .map_err(|why| format!("{}: {why}", step.mechanism).into()))
}
