//! KumoMTA's data helpers: `kumo.serde.json_encode`, `json_encode_pretty`,
//! `json_parse`, `json_load`, `toml_encode`, `toml_encode_pretty`,
//! `toml_parse`, `toml_load`, and the older top-level names
//! (`kumo.json_encode`, `kumo.json_parse`, `kumo.json_load`,
//! `kumo.toml_load`, …) that most policy files in the wild still call.
//!
//! Values cross as plain data (nil, booleans, numbers, strings, tables of
//! those), the same conversion `kumo.memoize` uses: JSON `null` is `nil`,
//! arrays are plain tables.
//!
//! **Bounded.** Text to parse is at most [`MAX_TEXT`] bytes, and `*_load`
//! reads only a regular file of at most that size under the directories
//! the config allows (`[lua] allowed_paths`, as `require` and
//! `kumo.secrets.load{key_path=…}`): a user list kept beside the policy
//! loads, `/etc/shadow` does not. Nesting is bounded by the parsers
//! themselves (serde_json's recursion limit, 128 levels).

use mlua::{Lua, LuaSerdeExt, Table, Value};

use crate::memoize::lua_options;

/// The largest text parsed or file loaded: a data file a policy reads at
/// load is small, and the read happens outside the Lua memory limit.
pub(crate) const MAX_TEXT: usize = 4 * 1024 * 1024;

/// Installs `kumo.serde` and the top-level aliases.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let serde = lua.create_table()?;
    serde.set(
        "json_encode",
        lua.create_function(|lua, v: Value| json_encode(lua, v, false))?,
    )?;
    serde.set(
        "json_encode_pretty",
        lua.create_function(|lua, v: Value| json_encode(lua, v, true))?,
    )?;
    serde.set(
        "json_parse",
        lua.create_function(|lua, text: mlua::String| {
            parse(lua, "json_parse", &text.as_bytes(), Format::Json)
        })?,
    )?;
    serde.set(
        "json_load",
        lua.create_function(|lua, path: String| load(lua, "json_load", &path, Format::Json))?,
    )?;
    serde.set(
        "toml_encode",
        lua.create_function(|lua, v: Value| toml_encode(lua, v, false))?,
    )?;
    serde.set(
        "toml_encode_pretty",
        lua.create_function(|lua, v: Value| toml_encode(lua, v, true))?,
    )?;
    serde.set(
        "toml_parse",
        lua.create_function(|lua, text: mlua::String| {
            parse(lua, "toml_parse", &text.as_bytes(), Format::Toml)
        })?,
    )?;
    serde.set(
        "toml_load",
        lua.create_function(|lua, path: String| load(lua, "toml_load", &path, Format::Toml))?,
    )?;
    for name in [
        "json_encode",
        "json_encode_pretty",
        "json_parse",
        "json_load",
        "toml_encode",
        "toml_encode_pretty",
        "toml_parse",
        "toml_load",
    ] {
        kumo.set(name, serde.get::<mlua::Function>(name)?)?;
    }
    kumo.set("serde", serde)
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Toml,
}

fn fail(function: &str, e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("kumo.serde.{function}: {e}"))
}

fn json_encode(lua: &Lua, value: Value, pretty: bool) -> mlua::Result<String> {
    let name = if pretty {
        "json_encode_pretty"
    } else {
        "json_encode"
    };
    let json: serde_json::Value = lua.from_value(value).map_err(|e| fail(name, e))?;
    match pretty {
        true => serde_json::to_string_pretty(&json),
        false => serde_json::to_string(&json),
    }
    .map_err(|e| fail(name, e))
}

fn toml_encode(lua: &Lua, value: Value, pretty: bool) -> mlua::Result<String> {
    let name = if pretty {
        "toml_encode_pretty"
    } else {
        "toml_encode"
    };
    let json: serde_json::Value = lua.from_value(value).map_err(|e| fail(name, e))?;
    match pretty {
        true => toml::to_string_pretty(&json),
        false => toml::to_string(&json),
    }
    .map_err(|e| fail(name, e))
}

fn parse(lua: &Lua, name: &str, text: &[u8], format: Format) -> mlua::Result<Value> {
    if text.len() > MAX_TEXT {
        return Err(fail(name, format!("longer than {MAX_TEXT} bytes")));
    }
    let text = std::str::from_utf8(text).map_err(|e| fail(name, e))?;
    let value: serde_json::Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| fail(name, e))?,
        Format::Toml => toml::from_str(text).map_err(|e| fail(name, e))?,
    };
    lua.to_value_with(&value, lua_options())
}

fn load(lua: &Lua, name: &str, path: &str, format: Format) -> mlua::Result<Value> {
    let shared = lua
        .app_data_ref::<std::sync::Arc<crate::pool::Shared>>()
        .ok_or_else(|| fail(name, "no policy context"))?
        .clone();
    let resolved = shared.paths.check(path).map_err(|e| fail(name, e))?;
    let bytes = crate::secrets::read_bounded(&resolved, MAX_TEXT as u64)
        .map_err(|e| fail(name, format!("{path}: {e}")))?;
    parse(lua, name, &bytes, format)
}
