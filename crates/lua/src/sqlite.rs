//! `require 'sqlite'`, as KumoMTA has it: `sqlite.open(path)` and
//! `db:execute(sql, ...)` with `?` parameters.
//!
//! A query that returns one column gives a list of values (so
//! `db:execute('select user from auth where …', u)[1] == u` works); several
//! columns give a list of tables keyed by column name; a statement without
//! columns gives the number of rows changed. Calls block: hooks run on the
//! blocking pool.
//!
//! **Confined.** A database is opened only under the directories the config
//! allows ([`crate::paths`]), `:memory:` aside, and never as a URI
//! (`file:…?…`: the path opened is the resolved, absolute one, and a URI
//! is refused to `ATTACH`); an authorizer lets `ATTACH` (and so `VACUUM INTO`, which
//! attaches its target) reach only the same directories. A progress
//! handler stops a query at the hook's deadline: SQLite runs in C, where
//! the Lua hook does not fire, and a recursive query can run forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{Lua, Table, UserData, UserDataMethods, Value, Variadic};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::OpenFlags;

use crate::paths::AllowedPaths;
use crate::pool::Shared;
use crate::sandbox::CallDeadline;

/// SQLite virtual-machine steps between two looks at the deadline.
const PROGRESS_EVERY: i32 = 10_000;

/// An open database.
struct Db(rusqlite::Connection);

pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let module = lua.create_table()?;
    module.set(
        "open",
        lua.create_function(|lua, (path, busy_ms): (String, Option<u64>)| {
            let fail = |e: String| mlua::Error::runtime(format!("sqlite.open {path}: {e}"));
            let paths = lua
                .app_data_ref::<Arc<Shared>>()
                .map(|shared| shared.paths.clone())
                .ok_or_else(|| fail("no policy context".into()))?;
            let conn = open(&path, &paths).map_err(|e| fail(e.to_string()))?;
            // A lock wait is no VM step: bound it by the deadline too.
            let busy = Duration::from_millis(busy_ms.unwrap_or(500));
            let busy = busy.min(CallDeadline::remaining(lua, busy));
            conn.busy_timeout(busy).map_err(mlua::Error::external)?;
            if let Some(deadline) = lua.app_data_ref::<CallDeadline>() {
                let deadline = deadline.0.clone();
                conn.progress_handler(
                    PROGRESS_EVERY,
                    Some(move || {
                        // Invariant: the lock is never held across a call into Lua.
                        let d = *deadline.lock().expect("deadline lock");
                        d.is_some_and(|d| Instant::now() >= d)
                    }),
                );
            }
            Ok(Db(conn))
        })?,
    )?;
    Ok(module)
}

/// Opens `path` if it is `:memory:` or lies under an allowed directory,
/// without URI parsing, with an authorizer that confines `ATTACH`.
/// Why `sqlite.open` failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Path(#[from] crate::paths::PathError),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn open(path: &str, paths: &AllowedPaths) -> Result<rusqlite::Connection, OpenError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match path {
        ":memory:" => rusqlite::Connection::open_in_memory_with_flags(flags),
        _ => rusqlite::Connection::open_with_flags(paths.check(path)?, flags),
    }?;
    let paths = paths.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| match ctx.action {
        // "" is a temporary database (plain VACUUM attaches one).
        AuthAction::Attach { filename } => match filename {
            "" | ":memory:" => Authorization::Allow,
            // The bundled SQLite parses URI names everywhere (SQLITE_USE_URI).
            f if f.starts_with("file:") => Authorization::Deny,
            f if paths.check(f).is_ok() => Authorization::Allow,
            _ => Authorization::Deny,
        },
        // ATTACH of an expression (`ATTACH ? AS x`): the name is unknown here.
        AuthAction::Unknown { code, .. } if code == rusqlite::ffi::SQLITE_ATTACH => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }));
    Ok(conn)
}

impl UserData for Db {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "execute",
            |lua, db, (sql, params): (String, Variadic<Value>)| {
                execute(lua, &db.0, &sql, &params)
                    .map_err(|e| mlua::Error::runtime(format!("sqlite: {e}")))
            },
        );
    }
}

fn execute(
    lua: &Lua,
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let params = params.iter().map(to_sql).collect::<Result<Vec<_>, _>>()?;
    let mut statement = conn.prepare(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    if columns.is_empty() {
        let changed = statement.execute(rusqlite::params_from_iter(params))?;
        return Ok(Value::Integer(changed as i64));
    }
    let result = lua.create_table()?;
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        let value = if columns.len() == 1 {
            from_sql(lua, row.get_ref(0)?)?
        } else {
            let t = lua.create_table()?;
            for (i, name) in columns.iter().enumerate() {
                t.set(name.as_str(), from_sql(lua, row.get_ref(i)?)?)?;
            }
            Value::Table(t)
        };
        result.push(value)?;
    }
    Ok(Value::Table(result))
}

/// A Lua value with no SQL counterpart (a table, a function).
#[derive(Debug, thiserror::Error)]
#[error("cannot bind a {0} as a parameter")]
struct Unbindable(&'static str);

fn to_sql(value: &Value) -> Result<SqlValue, Unbindable> {
    Ok(match value {
        Value::Nil => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Number(n) => SqlValue::Real(*n),
        Value::String(s) => match s.to_str() {
            Ok(text) => SqlValue::Text(text.to_string()),
            Err(_) => SqlValue::Blob(s.as_bytes().to_vec()),
        },
        other => return Err(Unbindable(other.type_name())),
    })
}

fn from_sql(lua: &Lua, value: ValueRef<'_>) -> mlua::Result<Value> {
    Ok(match value {
        ValueRef::Null => Value::Nil,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Number(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::String(lua.create_string(t)?),
    })
}
