//! One Lua state: the trimmed standard library, the memory limit, the
//! deadline hook, and the `kumo` / `portcullis` / `require` globals.
//!
//! **The deadline reaches every thread.** The hook is mlua's *global* hook:
//! Lua 5.4 copies a thread's hook into each coroutine it creates, and the
//! global hook's callback serves any thread (a per-thread hook, set on the
//! main thread only, removes itself in a coroutine, which then runs
//! unchecked). Past the deadline the hook raises an error; so that a script
//! cannot catch that error and go on, `pcall`, `xpcall`,
//! `coroutine.resume` and `coroutine.close` raise it again when they
//! return after the deadline. Lua's pattern functions run in C, where no
//! hook fires: they are replaced by bounded ones ([`crate::patterns`]).
//! A state whose call overran is dropped by the pool, never reused.
//!
//! **No finalizers.** Lua turns debug hooks off while a `__gc` metamethod
//! runs, and runs them when the collector pleases, or when a state is
//! closed: a looping `__gc` could be stopped by nothing and would hang the
//! thread that drops the state. So `setmetatable` refuses a metatable that
//! has a `__gc` field (an object is marked for finalization only then; one
//! added later is never called), and mlua's own userdata metatables are
//! protected from scripts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

use crate::pool::Shared;

/// How often (in VM instructions) the deadline is checked. Cheap enough to
/// be invisible, frequent enough that a loop is stopped within microseconds
/// of its deadline. It is also checked at every function call: a loop of
/// few instructions around a costly C call (`string.rep('x', 8e6)`) would
/// otherwise run thousands of those calls between two checks.
const DEADLINE_CHECK_EVERY: u32 = 10_000;

/// The message a stopped hook fails with; the caller treats it as a timeout.
pub(crate) const TIMED_OUT: &str = "policy hook ran past its deadline";

/// The deadline of the call in progress (Lua app data), for the Rust
/// functions that must stop at it too (SQLite's progress handler).
pub(crate) struct CallDeadline(pub Arc<Mutex<Option<Instant>>>);

impl CallDeadline {
    /// The time left before the deadline of the call in progress (zero
    /// once past); `fallback` between calls or outside a policy state.
    pub fn remaining(lua: &Lua, fallback: Duration) -> Duration {
        let Some(deadline) = lua.app_data_ref::<CallDeadline>() else {
            return fallback;
        };
        // Invariant: the lock is never held across a call into Lua.
        let d = *deadline.0.lock().expect("deadline lock");
        d.map_or(fallback, |d| d.saturating_duration_since(Instant::now()))
    }
}

/// A Lua state and the deadline its hook enforces.
pub(crate) struct State {
    pub lua: Lua,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl State {
    /// A fresh sandboxed state whose globals know `shared`.
    pub fn new(shared: Arc<Shared>, memory_limit: usize) -> mlua::Result<State> {
        let libs = StdLib::STRING
            | StdLib::TABLE
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        trim(&lua)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        crate::patterns::install(&lua, &deadline, memory_limit)?;
        install_guards(&lua, &deadline)?;
        lua.set_app_data(shared);
        lua.set_app_data(CallDeadline(deadline.clone()));
        crate::kumo::install(&lua)?;
        install_require(&lua)?;
        install_print(&lua)?;
        let seen = deadline.clone();
        lua.set_global_hook(
            HookTriggers::new()
                .every_nth_instruction(DEADLINE_CHECK_EVERY)
                .on_calls(),
            move |_, _| {
                if past(&seen) {
                    Err(mlua::Error::runtime(TIMED_OUT))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )?;
        // Set last: loading the libraries above must not count.
        lua.set_memory_limit(memory_limit)?;
        Ok(State { lua, deadline })
    }

    /// Sets the time after which running Lua code fails.
    pub fn set_deadline(&self, deadline: Instant) {
        // Invariant: see the hook.
        *self.deadline.lock().expect("deadline lock") = Some(deadline);
    }

    /// Clears the deadline between calls (mlua's own protected calls, made
    /// while reading the registry, trigger the call hook too).
    pub fn clear_deadline(&self) {
        // Invariant: see the hook.
        *self.deadline.lock().expect("deadline lock") = None;
    }
}

/// Whether the deadline has passed.
fn past(deadline: &Mutex<Option<Instant>>) -> bool {
    // Invariant: the lock is never held across a call into Lua.
    deadline
        .lock()
        .expect("deadline lock")
        .is_some_and(|d| Instant::now() >= d)
}

/// Wraps the functions that catch errors so that, once the deadline has
/// passed, they raise the timeout instead of returning: `while true do
/// pcall(loop) end` cannot outlive its deadline. The wrappers are Lua
/// functions, so a coroutine may still yield across `pcall`. Also wraps
/// `setmetatable` to refuse `__gc` (see the module docs).
fn install_guards(lua: &Lua, deadline: &Arc<Mutex<Option<Instant>>>) -> mlua::Result<()> {
    let seen = deadline.clone();
    let check = lua.create_function(move |_, results: mlua::MultiValue| {
        if past(&seen) {
            Err(mlua::Error::runtime(TIMED_OUT))
        } else {
            Ok(results)
        }
    })?;
    lua.load(
        r#"
        local check, pcall, xpcall, co = ...
        local resume, close = co.resume, co.close
        local setmetatable, rawget, type, error = setmetatable, rawget, type, error
        _G.setmetatable = function(t, mt)
          if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then
            error('setmetatable: __gc metamethods are not allowed in policy scripts', 2)
          end
          return setmetatable(t, mt)
        end
        _G.pcall = function(...) return check(pcall(...)) end
        _G.xpcall = function(...) return check(xpcall(...)) end
        co.resume = function(...) return check(resume(...)) end
        co.close = function(...) return check(close(...)) end
        "#,
    )
    .set_name("=sandbox")
    .call::<()>((
        check,
        lua.globals().get::<Value>("pcall")?,
        lua.globals().get::<Value>("xpcall")?,
        lua.globals().get::<Table>("coroutine")?,
    ))
}

/// Removes everything that reaches the file system or the process.
fn trim(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    for name in ["dofile", "loadfile", "load"] {
        globals.set(name, Value::Nil)?;
    }
    let os: Table = globals.get("os")?;
    let kept = lua.create_table()?;
    // `getenv` reads the environment (KumoMTA scripts take settings from
    // it); nothing here changes it.
    for name in ["time", "clock", "date", "difftime", "getenv"] {
        kept.set(name, os.get::<Value>(name)?)?;
    }
    globals.set("os", kept)?;
    let string: Table = globals.get("string")?;
    string.set("dump", Value::Nil)?;
    Ok(())
}

/// `require`: the built-in modules (`sqlite`, `kumo`, `portcullis`), then
/// Lua files along `package.path`. That path starts as the script's
/// directory (`<dir>/?.lua;<dir>/?/init.lua`); a script may set it, as
/// KumoMTA scripts do, but every file it names must lie under the allowed
/// directories ([`crate::paths`]), like every other file a script reaches.
/// A module name is dotted words (`lib.users`), so it cannot climb out of
/// a directory with `..` or `/`. A module runs once per state; what it
/// returns is kept in `package.loaded`.
fn install_require(lua: &Lua) -> mlua::Result<()> {
    let package = lua.create_table()?;
    let dir = lua
        .app_data_ref::<Arc<Shared>>()
        .map(|s| s.script_dir.display().to_string())
        .unwrap_or_else(|| ".".into());
    package.set("path", format!("{dir}/?.lua;{dir}/?/init.lua"))?;
    package.set("loaded", lua.create_table()?)?;
    lua.globals().set("package", package)?;
    let require = lua.create_function(|lua, name: String| match name.as_str() {
        "sqlite" => crate::sqlite::module(lua).map(Value::Table),
        "kumo" => lua.globals().get::<Value>("kumo"),
        "portcullis" => lua.globals().get::<Value>("portcullis"),
        other => require_file(lua, other),
    })?;
    lua.globals().set("require", require)
}

/// A module from a file along `package.path` (see [`install_require`]).
fn require_file(lua: &Lua, name: &str) -> mlua::Result<Value> {
    let fail = |why: String| mlua::Error::runtime(format!("module '{name}' not found: {why}"));
    let valid = !name.is_empty()
        && name.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !valid {
        return Err(fail(
            "a module name is dotted words of letters, digits, '_' and '-'".into(),
        ));
    }
    let package: Table = lua.globals().get("package")?;
    let loaded: Table = package.get("loaded")?;
    match loaded.get::<Value>(name)? {
        Value::Nil | Value::Boolean(false) => {}
        done => return Ok(done),
    }
    let search: String = package.get("path")?;
    let relative = name.replace('.', "/");
    let shared = lua
        .app_data_ref::<Arc<Shared>>()
        .ok_or_else(|| mlua::Error::runtime("require: no policy context"))?
        .clone();
    let mut tried = Vec::new();
    for template in search.split(';').filter(|t| !t.is_empty()) {
        let candidate = template.replace('?', &relative);
        if !std::path::Path::new(&candidate).is_file() {
            tried.push(candidate);
            continue;
        }
        let resolved = shared
            .paths
            .check(&candidate)
            .map_err(|e| fail(e.to_string()))?;
        let source = crate::secrets::read_key_file(&resolved)
            .map_err(|e| fail(format!("{}: {e}", resolved.display())))?;
        let value: Value = lua
            .load(source)
            .set_name(format!("@{}", resolved.display()))
            .call((name, resolved.display().to_string()))?;
        let value = match value {
            Value::Nil => Value::Boolean(true),
            v => v,
        };
        loaded.set(name, value.clone())?;
        return Ok(value);
    }
    Err(fail(format!(
        "not built in ('sqlite', 'kumo', 'portcullis'), and no file {}",
        tried.join(", ")
    )))
}

/// `print` goes to the log, not to stdout.
fn install_print(lua: &Lua) -> mlua::Result<()> {
    let print = lua.create_function(|lua, args: mlua::Variadic<Value>| {
        let line = log_line(lua, &args)?;
        tracing::info!(target: "portcullis::policy", "{line}");
        Ok(())
    })?;
    lua.globals().set("print", print)
}

/// The arguments of `print` or `kumo.log_*`, as `print` joins them.
pub(crate) fn log_line(lua: &Lua, args: &[Value]) -> mlua::Result<String> {
    let tostring = lua.globals().get::<mlua::Function>("tostring")?;
    let mut line = String::new();
    for (i, value) in args.iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        let text: mlua::String = tostring.call(value.clone())?;
        line.push_str(&text.to_string_lossy());
    }
    Ok(line)
}
