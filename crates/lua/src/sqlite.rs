//! `require 'sqlite'`, as KumoMTA has it: `sqlite.open(path)` and
//! `db:execute(sql, ...)` with `?` parameters.
//!
//! A query that returns one column gives a list of values (so
//! `db:execute('select user from auth where …', u)[1] == u` works); several
//! columns give a list of tables keyed by column name; a statement without
//! columns gives the number of rows changed. Calls block: hooks run on the
//! blocking pool.

use std::time::Duration;

use mlua::{Lua, Table, UserData, UserDataMethods, Value, Variadic};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// An open database.
struct Db(rusqlite::Connection);

pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let module = lua.create_table()?;
    module.set(
        "open",
        lua.create_function(|_, (path, busy_ms): (String, Option<u64>)| {
            let conn = rusqlite::Connection::open(&path)
                .map_err(|e| mlua::Error::runtime(format!("sqlite.open {path}: {e}")))?;
            conn.busy_timeout(Duration::from_millis(busy_ms.unwrap_or(500)))
                .map_err(mlua::Error::external)?;
            Ok(Db(conn))
        })?,
    )?;
    Ok(module)
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

fn to_sql(value: &Value) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Nil => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Number(n) => SqlValue::Real(*n),
        Value::String(s) => match s.to_str() {
            Ok(text) => SqlValue::Text(text.to_string()),
            Err(_) => SqlValue::Blob(s.as_bytes().to_vec()),
        },
        other => {
            return Err(format!(
                "cannot bind a {} as a parameter",
                other.type_name()
            ))
        }
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
