//! `portcullis.on('smtp_server_message_received', function(msg, conn) … end)`:
//! the last word on a message before it is spooled.
//!
//! The hook sees the envelope and who sent it (authn/authz ids, mechanism,
//! and the user data an accepting AUTH hook attached), so per-user rules
//! (allowed senders, quotas) can be scripted. It runs before the spool
//! write: a refusal means nothing was stored and the client gets the
//! refusal instead of `250`. A script error or a timeout defers (`451`):
//! a broken script must not silently let mail through, nor bounce it.

use mlua::{Lua, LuaSerdeExt, Value};
use portcullis_proto::Reply;

use crate::events::{self, Namespace};
use crate::request::{ConnFacts, ConnMeta};

/// What the hook is told about a message.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Octets of the body as received (before our trace header).
    pub size: usize,
    pub helo: String,
    pub authn_id: Option<String>,
    pub authz_id: Option<String>,
    pub mechanism: Option<String>,
    /// What the accepting AUTH hook attached (`accept{data=…}`).
    pub user_data: Option<serde_json::Value>,
}

/// The answer of `smtp_server_message_received`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageVerdict {
    /// Spool it (also when no hook is registered).
    Accept,
    /// Do not spool; answer `reply` (`550 5.7.1`, `451 4.7.1` or the
    /// script's). `reason` is for the log.
    Refuse { reply: Reply, reason: String },
}

impl MessageVerdict {
    pub(crate) fn defer(reason: String) -> MessageVerdict {
        MessageVerdict::Refuse {
            reply: Reply::message_deferred_by_policy(),
            reason,
        }
    }
}

/// Runs the hook, if the script registered one.
pub(crate) fn call(
    lua: &Lua,
    msg: &MessageFacts,
    conn: &ConnFacts,
    meta: &ConnMeta,
) -> mlua::Result<Result<MessageVerdict, crate::verdict::BadAnswer>> {
    let hook = crate::kumo::handler(
        lua,
        Namespace::Portcullis,
        events::SMTP_SERVER_MESSAGE_RECEIVED,
    )?;
    let Some(hook) = hook else {
        return Ok(Ok(MessageVerdict::Accept));
    };
    let t = lua.create_table()?;
    t.set("mail_from", msg.mail_from.as_str())?;
    t.set("rcpt_to", msg.rcpt_to.clone())?;
    t.set("size", msg.size)?;
    t.set("helo", msg.helo.as_str())?;
    t.set("authn_id", msg.authn_id.as_deref())?;
    t.set("authz_id", msg.authz_id.as_deref())?;
    t.set("mechanism", msg.mechanism.as_deref())?;
    if let Some(data) = &msg.user_data {
        t.set(
            "user_data",
            lua.to_value_with(data, crate::memoize::lua_options())?,
        )?;
    }
    let answer: Value = hook.call((t, conn.to_lua(lua, meta)?))?;
    Ok(verdict(answer))
}

pub(crate) fn verdict(answer: Value) -> Result<MessageVerdict, crate::verdict::BadAnswer> {
    let t = match answer {
        Value::Nil | Value::Boolean(true) => return Ok(MessageVerdict::Accept),
        Value::Boolean(false) => {
            return Ok(MessageVerdict::Refuse {
                reply: Reply::message_refused_by_policy(),
                reason: "the hook returned false".into(),
            })
        }
        Value::Table(t) => t,
        other => return Err(format!("the hook returned a {}", other.type_name()).into()),
    };
    let kind: Option<String> = t.get("verdict").map_err(|e| e.to_string())?;
    let (default, classes) = match kind.as_deref() {
        Some("accept") => return Ok(MessageVerdict::Accept),
        Some("reject") => (Reply::message_refused_by_policy(), &[4, 5][..]),
        Some("defer") => (Reply::message_deferred_by_policy(), &[4][..]),
        other => {
            return Err(format!(
                "the hook returned a table whose verdict is {other:?} (use portcullis.accept/reject/defer)"
            ).into())
        }
    };
    let (reply, _disconnect, reason) = crate::verdict::refusal(&t, default, classes)?;
    Ok(MessageVerdict::Refuse { reply, reason })
}
