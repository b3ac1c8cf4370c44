//! The conversion of a policy hook's answer (a Lua value) into a verdict:
//! `smtp_server_auth`, KumoMTA's `smtp_server_auth_plain` and
//! `smtp_server_message_received`, on values the fuzzer builds.
//!
//! The input is a little stack program that builds the value in a Lua
//! state with mlua: scalars, strings, tables, fields, shared and cyclic
//! references, deep nesting, metatables whose `__index` calls Lua or fails,
//! and functions. Beyond "no panic", the target checks the promises of the
//! conversion: a refusal's reply is one well-formed line of the allowed
//! class with a matching enhanced code; an authzid the client asked for is
//! never granted by a bare `true`; and the user data of an accept can be
//! stored as JSON and read back (the spool keeps it with each message and
//! the message hook gets it back as Lua).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_lua::fuzzing::mlua::{self, Lua, LuaSerdeExt, Value};
use portcullis_lua::fuzzing::{auth_verdict, kumo_verdict, message_verdict};
use portcullis_lua::{MessageVerdict, Verdict};

const KEYS: &[&str] = &[
    "verdict",
    "accept",
    "reject",
    "defer",
    "reply",
    "user",
    "authz",
    "data",
    "code",
    "enhanced",
    "message",
    "disconnect",
    "challenge",
    "5.7.8",
    "4.7.0",
    "2.0.0",
    "addresses",
    "alice",
    "bob",
    "",
];
const INTEGERS: &[i64] = &[
    0,
    1,
    -1,
    2,
    4,
    5,
    7,
    8,
    235,
    250,
    421,
    450,
    451,
    454,
    459,
    460,
    535,
    550,
    554,
    559,
    560,
    599,
    999,
    1000,
    65535,
    65536,
    i64::MIN,
    i64::MAX,
];
const MAX_STACK: usize = 64;

/// Reads the fuzzer's bytes one at a time; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

thread_local! {
    /// One state for every run (a fresh one per run costs most of the
    /// time); each run's values are garbage once it ends.
    static LUA: Lua = {
        let lua = Lua::new();
        lua.set_memory_limit(16 << 20).expect("memory limit");
        lua
    };
}

fuzz_target!(|input: &[u8]| {
    LUA.with(|lua| {
        run(lua, input);
        lua.gc_collect().expect("garbage collection");
    })
});

fn run(lua: &Lua, input: &[u8]) {
    let mut bytes = Bytes(input);
    let flags = bytes.byte();
    let Ok(value) = build(lua, &mut bytes) else {
        return;
    };
    let authzid = match flags & 3 {
        0 => None,
        1 => Some("alice"),
        _ => Some("bob"),
    };
    let checked = flags & 4 != 0;
    match auth_verdict(lua, value.clone(), "alice", authzid, checked) {
        Ok(verdict) => check_auth(lua, &value, &verdict, authzid, checked),
        Err(mistake) => assert!(!mistake.to_string().is_empty()),
    }
    if let Ok(Verdict::Accept { authz_id, .. }) =
        kumo_verdict(value.clone(), authzid.unwrap_or("alice"), "alice")
    {
        assert_eq!(authz_id, "alice", "a boolean granted another authzid");
    }
    if let Ok(MessageVerdict::Refuse { reply, .. }) = message_verdict(value) {
        check_reply(&reply, &[4, 5]);
    }
}

fn build(lua: &Lua, bytes: &mut Bytes<'_>) -> mlua::Result<Value> {
    let fails = lua
        .load("return function() error('no') end")
        .eval::<Value>()?;
    let answers = lua
        .load("return function(t, k) return k == 'verdict' and 'accept' or nil end")
        .eval::<Value>()?;
    let mut stack: Vec<Value> = Vec::new();
    while let Some(op) = bytes.next() {
        let pushed = match op % 16 {
            0 => Value::Nil,
            1 => Value::Boolean(true),
            2 => Value::Boolean(false),
            3 => Value::Integer(INTEGERS[bytes.byte() as usize % INTEGERS.len()]),
            4 => {
                let raw = bytes.take(8);
                let mut b = [0; 8];
                b[..raw.len()].copy_from_slice(raw);
                Value::Number(f64::from_le_bytes(b))
            }
            5 => {
                let len = bytes.byte() as usize;
                Value::String(lua.create_string(bytes.take(len))?)
            }
            6 => Value::String(lua.create_string(KEYS[bytes.byte() as usize % KEYS.len()])?),
            7 => Value::Table(lua.create_table()?),
            8 => {
                // t[k] = v with t, k, v from the top of the stack.
                let (Some(v), Some(k)) = (stack.pop(), stack.pop()) else {
                    continue;
                };
                if let Some(Value::Table(t)) = stack.last() {
                    let _ = t.raw_set(k, v);
                }
                continue;
            }
            9 => {
                let Some(v) = stack.pop() else { continue };
                if let Some(Value::Table(t)) = stack.last() {
                    let _ = t.raw_push(v);
                }
                continue;
            }
            10 => match stack.last() {
                Some(top) => top.clone(),
                None => continue,
            },
            11 => {
                // Wraps the top in up to 1 020 single-element tables.
                let Some(mut v) = stack.pop() else { continue };
                for _ in 0..bytes.byte() as usize * 4 {
                    let t = lua.create_table()?;
                    t.raw_push(v)?;
                    v = Value::Table(t);
                }
                v
            }
            12 => {
                let Some(Value::Table(t)) = stack.last() else {
                    continue;
                };
                let meta = lua.create_table()?;
                let index = match bytes.byte() % 3 {
                    0 => fails.clone(),
                    1 => answers.clone(),
                    _ => stack
                        .get(stack.len().wrapping_sub(2))
                        .cloned()
                        .unwrap_or(Value::Nil),
                };
                meta.raw_set("__index", index)?;
                t.set_metatable(Some(meta))?;
                continue;
            }
            13 => {
                let n = stack.len();
                if n >= 2 {
                    stack.swap(n - 1, n - 2);
                }
                continue;
            }
            14 => {
                // A table that holds itself under a key.
                let key = KEYS[bytes.byte() as usize % KEYS.len()];
                if let Some(Value::Table(t)) = stack.last() {
                    t.raw_set(key, t.clone())?;
                }
                continue;
            }
            _ => fails.clone(),
        };
        if stack.len() < MAX_STACK {
            stack.push(pushed);
        }
    }
    Ok(stack.pop().unwrap_or(Value::Nil))
}

fn check_auth(lua: &Lua, value: &Value, verdict: &Verdict, authzid: Option<&str>, checked: bool) {
    match verdict {
        Verdict::Accept {
            authn_id,
            authz_id,
            user_data,
        } => {
            if matches!(value, Value::Boolean(true)) {
                assert_eq!(authn_id, "alice");
                match authzid {
                    Some(asked) if asked != "alice" && !checked => {
                        panic!("`true` granted the authzid {asked:?}")
                    }
                    _ => assert_eq!(authz_id, authzid.unwrap_or("alice")),
                }
            }
            if let Some(data) = user_data {
                // The spool writes the metadata as JSON and reads it back.
                let json = serde_json::to_vec(data).expect("user data serialises");
                serde_json::from_slice::<serde_json::Value>(&json)
                    .expect("stored user data reads back");
                // The message hook gets it back as Lua.
                let options = mlua::SerializeOptions::new()
                    .serialize_none_to_null(false)
                    .serialize_unit_to_null(false)
                    .set_array_metatable(false);
                lua.to_value_with(data, options)
                    .expect("user data converts back to Lua");
            }
        }
        Verdict::Reject { reply, .. } => check_reply(reply, &[4, 5]),
        Verdict::Defer { reply, .. } => check_reply(reply, &[4]),
        Verdict::Challenge(_) => panic!("a hook's answer became a challenge"),
        _ => {}
    }
}

/// One line, `code SP class.subject.detail SP text CRLF`, of an allowed
/// class, with the enhanced code in the same class.
fn check_reply(reply: &portcullis_proto::Reply, classes: &[u16]) {
    let code = reply.code();
    assert!(classes.contains(&(code / 100)), "reply code {code}");
    if let Some(status) = reply.status() {
        assert_eq!(u16::from(status.0), code / 100, "enhanced code class");
    }
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    assert!(wire.ends_with(b"\r\n"));
    let line = &wire[..wire.len() - 2];
    assert!(
        !line.iter().any(|&b| b == b'\r' || b == b'\n'),
        "reply text breaks the line: {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert!(line.len() <= 510, "reply longer than a line may be");
}
