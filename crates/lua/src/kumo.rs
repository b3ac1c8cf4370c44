//! The `kumo` and `portcullis` globals: event registration, KumoMTA's
//! helpers (`memoize`, `secrets`), the verdict constructors, and no-op stand-ins
//! for KumoMTA's queue and listener set-up so whole KumoMTA configs load.

use mlua::{Function, Lua, Table, Value, Variadic};

use crate::events::{self, Namespace};

/// The registry table holding registered handlers, keyed `ns.name`.
pub(crate) const HANDLERS: &str = "portcullis.handlers";

/// KumoMTA functions that configure things portcullis does not have. They
/// log and return their first argument, so `init` handlers run through.
const KUMO_NO_OPS: &[&str] = &[
    "start_esmtp_listener",
    "start_http_listener",
    "configure_local_logs",
    "configure_log_hook",
    "configure_accounting_db",
    "configure_bounce_classifier",
    "define_spool",
    "set_diagnostic_log_filter",
    "set_config_monitor_globs",
    "set_max_spare_lua_contexts",
    "set_max_lua_context_use_count",
    "make_listener_domain",
    "make_queue_config",
    "make_egress_source",
    "make_egress_pool",
    "make_egress_path",
];

pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(HANDLERS, lua.create_table()?)?;
    let kumo = lua.create_table()?;
    kumo.set("on", on_function(lua, Namespace::Kumo)?)?;
    kumo.set("memoize", lua.create_function(crate::memoize::memoize)?)?;
    let secrets = lua.create_table()?;
    secrets.set("load", lua.create_function(crate::secrets::load)?)?;
    kumo.set("secrets", secrets)?;
    for name in KUMO_NO_OPS {
        let f = lua.create_function(move |_, args: Variadic<Value>| {
            tracing::debug!(target: "portcullis::policy", "kumo.{name}: not used by portcullis, ignored");
            Ok(args.into_iter().next().unwrap_or(Value::Nil))
        })?;
        kumo.set(*name, f)?;
    }
    lua.globals().set("kumo", kumo)?;

    let portcullis = lua.create_table()?;
    portcullis.set("on", on_function(lua, Namespace::Portcullis)?)?;
    crate::verdict::install_constructors(lua, &portcullis)?;
    crate::mechanism::install(lua, &portcullis)?;
    portcullis.set("memoize", lua.create_function(crate::memoize::memoize)?)?;
    lua.globals().set("portcullis", portcullis)
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
            tracing::debug!(target: "portcullis::policy", "{key}: registered, never called by portcullis");
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
