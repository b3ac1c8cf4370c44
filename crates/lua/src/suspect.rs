//! `portcullis.on('portcullis_identity_suspect', function(suspect) … end)`:
//! told when a compromise signal fires for an identity, after the
//! configured answer is in force, so a script can notify in its own way
//! or choose another answer.
//!
//! The hook runs off the session's path (sessions never wait for it). It
//! may return nil (keep the configured answer) or the name of another:
//! `"log"`, `"hold"`, `"defer"` or `"suspend"`.

use mlua::{Lua, LuaSerdeExt, Value};

use crate::events::{self, Namespace};
use crate::verdict::BadAnswer;

/// The answers a script may pick.
const ANSWERS: [&str; 4] = ["log", "hold", "defer", "suspend"];

/// Runs the hook, if the script registered one. `Ok(None)`: keep the
/// configured answer.
pub(crate) fn call(
    lua: &Lua,
    suspect: &serde_json::Value,
) -> mlua::Result<Result<Option<String>, BadAnswer>> {
    let hook = crate::kumo::handler(lua, Namespace::Portcullis, events::IDENTITY_SUSPECT)?;
    let Some(hook) = hook else {
        return Ok(Ok(None));
    };
    let argument = lua.to_value_with(suspect, crate::memoize::lua_options())?;
    let answer: Value = hook.call(argument)?;
    Ok(match answer {
        Value::Nil => Ok(None),
        Value::String(s) => {
            let s = s.to_str()?.to_string();
            match ANSWERS.contains(&s.as_str()) {
                true => Ok(Some(s)),
                false => Err(format!("unknown answer {s:?} (log, hold, defer, suspend)").into()),
            }
        }
        other => Err(format!("the hook returned a {}", other.type_name()).into()),
    })
}
