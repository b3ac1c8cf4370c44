//! The `kumo` and `portcullis` globals: event registration, KumoMTA's
//! helpers (`memoize`, `secrets`, `reject`, `disconnect`, logging), the
//! verdict constructors, and stand-ins for KumoMTA's queue, listener and
//! spool set-up so whole KumoMTA configs load. What a script registers or
//! calls that means nothing here is noted ([`Ignored`]) and reported once
//! per load, not silently dropped: an operator sees which parts of a
//! KumoMTA file do not apply.

use std::sync::Mutex;

use mlua::{Function, Lua, Table, Value, Variadic};

use crate::events::{self, Namespace};

/// The registry table holding registered handlers, keyed `ns.name`.
pub(crate) const HANDLERS: &str = "portcullis.handlers";

/// What a script used that portcullis accepts but ignores (KumoMTA-only
/// events and configuration calls), in first-use order, one line each; the
/// pool reports the first state's list once per load (Lua app data).
#[derive(Default)]
pub(crate) struct Ignored(Mutex<Vec<String>>);

impl Ignored {
    fn note(lua: &Lua, line: String) {
        if let Some(ignored) = lua.app_data_ref::<Ignored>() {
            // Invariant: the lock is only held to push or copy.
            let mut list = ignored.0.lock().expect("ignored lock");
            if !list.contains(&line) {
                list.push(line);
            }
        }
    }

    /// The lines noted so far.
    pub fn lines(lua: &Lua) -> Vec<String> {
        lua.app_data_ref::<Ignored>()
            .map(|i| i.0.lock().expect("ignored lock").clone())
            .unwrap_or_default()
    }
}

pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(HANDLERS, lua.create_table()?)?;
    lua.set_app_data(Ignored::default());
    let kumo = lua.create_table()?;
    kumo.set("on", on_function(lua, Namespace::Kumo)?)?;
    kumo.set("memoize", lua.create_function(crate::memoize::memoize)?)?;
    let secrets = lua.create_table()?;
    secrets.set("load", lua.create_function(crate::secrets::load)?)?;
    kumo.set("secrets", secrets)?;
    crate::verdict::install_kumo_refusals(lua, &kumo)?;
    for name in events::KUMO_CONFIGURATION {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            Ignored::note(lua, format!("kumo.{name}: KumoMTA-only, ignored"));
            Ok(args.into_iter().next().unwrap_or(Value::Nil))
        })?;
        kumo.set(*name, f)?;
    }
    install_logging(lua, &kumo)?;
    crate::formats::install(lua, &kumo)?;
    crate::digest::install(lua, &kumo)?;
    crate::http::install(lua, &kumo)?;
    lua.globals().set("kumo", kumo)?;

    let portcullis = lua.create_table()?;
    portcullis.set("on", on_function(lua, Namespace::Portcullis)?)?;
    crate::verdict::install_constructors(lua, &portcullis)?;
    crate::mechanism::install(lua, &portcullis)?;
    portcullis.set("memoize", lua.create_function(crate::memoize::memoize)?)?;
    lua.globals().set("portcullis", portcullis)
}

/// `kumo.log_error`, `log_warn`, `log_info`, `log_debug`: KumoMTA's
/// logging, into portcullis's log (target `portcullis::policy`), the
/// arguments joined as `print` joins them.
fn install_logging(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    macro_rules! level {
        ($name:literal, $level:ident) => {
            kumo.set(
                $name,
                lua.create_function(|lua, args: Variadic<Value>| {
                    let line = crate::sandbox::log_line(lua, &args)?;
                    tracing::$level!(target: "portcullis::policy", "{line}");
                    Ok(())
                })?,
            )?;
        };
    }
    level!("log_error", error);
    level!("log_warn", warn);
    level!("log_info", info);
    level!("log_debug", debug);
    Ok(())
}

/// `kumo.on(name, f)` / `portcullis.on(name, f)`.
fn on_function(lua: &Lua, namespace: Namespace) -> mlua::Result<Function> {
    lua.create_function(move |lua, (name, handler): (String, Function)| {
        let Some(event) = events::find(namespace, &name) else {
            let prefix = prefix(namespace);
            return Err(mlua::Error::runtime(format!(
                "{prefix}.on: unknown event '{name}' (see docs/policy.md for the events portcullis knows)"
            )));
        };
        let handlers: Table = lua.named_registry_value(HANDLERS)?;
        let key = handler_key(namespace, event.name);
        if handlers.contains_key(key.as_str())? {
            return Err(mlua::Error::runtime(format!(
                "{key}: a handler is already registered"
            )));
        }
        if event.support == events::Support::Ignored {
            Ignored::note(lua, format!("event {}: KumoMTA-only, ignored", event.name));
        }
        handlers.set(key, handler)
    })
}

fn prefix(namespace: Namespace) -> &'static str {
    match namespace {
        Namespace::Kumo => "kumo",
        Namespace::Portcullis => "portcullis",
    }
}

/// The registry key of a handler.
pub(crate) fn handler_key(namespace: Namespace, name: &str) -> String {
    format!("{}.{name}", prefix(namespace))
}

/// The handler registered for an event, if any.
pub(crate) fn handler(
    lua: &Lua,
    namespace: Namespace,
    name: &str,
) -> mlua::Result<Option<Function>> {
    let handlers: Table = lua.named_registry_value(HANDLERS)?;
    handlers.get(handler_key(namespace, name))
}
