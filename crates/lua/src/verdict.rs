//! The answer of a hook, and how Lua values become one.
//!
//! `portcullis.accept{…}`, `portcullis.reject{…}` and `portcullis.defer{…}`
//! build tagged tables; a hook may also return such a table itself, or a
//! boolean. Codes and texts a script gives are checked here (a reject is
//! `4xx`/`5xx`, a defer `4xx`, the enhanced code's class matches, CR and LF
//! are removed from the text) so a script cannot break the protocol.
//! KumoMTA's `kumo.reject(code, text)` and `kumo.disconnect(code, text)`
//! raise an error that carries the reply ([`KumoRefusal`]); their code and
//! text are checked the same way before anything is raised.

use mlua::{Lua, LuaSerdeExt, Table, Value};
use portcullis_proto::reply::EnhancedCode;
use portcullis_proto::Reply;

/// Longest reply text a script may set.
const MAX_TEXT: usize = 400;
/// Deepest user data a script may attach. The spool keeps it as JSON with
/// each message and reads it back to deliver; JSON readers (serde_json
/// among them) stop at 128 levels, so deeper data would be accepted and
/// then found unreadable. The check also keeps the conversion's recursion
/// off the end of the stack.
const MAX_DATA_DEPTH: usize = 32;
/// Most values (tables, keys, scalars) user data may hold: it is stored
/// with every message, and a table may hold one table many times over.
const MAX_DATA_VALUES: usize = 10_000;

/// What the policy decided about one AUTH attempt.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// `235`: the client is `authn_id`, acting as `authz_id`.
    Accept {
        authn_id: String,
        authz_id: String,
        /// Plain data the script attached; it follows the session and is
        /// stored with each message.
        user_data: Option<serde_json::Value>,
    },
    /// `535` or the script's reply; the client may try again unless
    /// `disconnect`.
    Reject {
        reply: Reply,
        disconnect: bool,
        /// For OAUTHBEARER and XOAUTH2: the error JSON sent as a challenge
        /// before the reply (RFC 7628 §3.2.2), from `reject{ oauth = {
        /// status =, schemes =, scope = } }`; `None`: the default one.
        oauth_challenge: Option<Vec<u8>>,
        /// For the log only.
        reason: String,
    },
    /// `454` or the script's reply: a temporary failure.
    Defer {
        reply: Reply,
        disconnect: bool,
        reason: String,
    },
    /// `454`: the script failed (a Lua error or an answer it should not
    /// have given). The client sees a temporary failure, but the server
    /// must treat the attempt as a failed one (the failure delay, counted
    /// against the client): a script that errors for unknown users (the
    /// documented Vault example does) would otherwise tell them apart from
    /// known ones, fast and for free.
    ScriptError { reply: Reply, reason: String },
    /// `portcullis.reply(text)` from a script mechanism: send `text` in a
    /// `334` and call the mechanism again with the client's answer.
    Challenge(Vec<u8>),
}

impl Verdict {
    /// The default reject.
    pub(crate) fn reject(reason: impl Into<String>) -> Verdict {
        Verdict::Reject {
            reply: Reply::auth_failed(),
            disconnect: false,
            oauth_challenge: None,
            reason: reason.into(),
        }
    }

    /// A script error.
    pub(crate) fn script_error(reason: impl Into<String>) -> Verdict {
        Verdict::ScriptError {
            reply: Reply::auth_temporary_failure(),
            reason: reason.into(),
        }
    }

    /// The default defer.
    pub(crate) fn defer(reason: impl Into<String>) -> Verdict {
        Verdict::Defer {
            reply: Reply::auth_temporary_failure(),
            disconnect: false,
            reason: reason.into(),
        }
    }
}

/// `portcullis.accept`, `portcullis.reject`, `portcullis.defer`.
pub(crate) fn install_constructors(lua: &Lua, portcullis: &Table) -> mlua::Result<()> {
    for kind in ["accept", "reject", "defer"] {
        let f = lua.create_function(move |lua, options: Value| {
            let t = match options {
                Value::Table(t) => t,
                Value::String(message) => {
                    let t = lua.create_table()?;
                    t.set("message", message)?;
                    t
                }
                Value::Nil => lua.create_table()?,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "portcullis.{kind}: expected a table or a message, got a {}",
                        other.type_name()
                    )))
                }
            };
            t.set("verdict", kind)?;
            Ok(t)
        })?;
        portcullis.set(kind, f)?;
    }
    Ok(())
}

/// A hook answered with something the server cannot use: the script's
/// mistake, not the client's (the attempt is deferred, and the log says
/// what was wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(String);

impl From<String> for BadAnswer {
    fn from(message: String) -> Self {
        BadAnswer(message)
    }
}

impl From<&str> for BadAnswer {
    fn from(message: &str) -> Self {
        BadAnswer(message.to_string())
    }
}

/// The answer of `smtp_server_auth`. `Err` is a script mistake (the caller
/// defers).
///
/// The authorization identity the client asked for is granted only when it
/// names the user itself, when our own verification already authorized it
/// (`authzid_checked`, for logins the hook only reviews), or when the
/// script grants it explicitly with `accept{authz=…}`. A script that just
/// says yes to a password must not thereby let the client act as anyone.
pub(crate) fn from_general(
    lua: &Lua,
    value: Value,
    user: &str,
    authzid: Option<&str>,
    authzid_checked: bool,
) -> Result<Verdict, BadAnswer> {
    let accept = |name: Option<String>, authz: Option<String>, data| {
        let authn_id = name.unwrap_or_else(|| user.to_string());
        let authz_id = match (authz, authzid) {
            (Some(granted), _) => granted,
            (None, Some(asked)) if authzid_checked || asked == user || asked == authn_id => {
                asked.to_string()
            }
            (None, Some(_)) => {
                return Verdict::reject(
                    "authorization identity refused: the script accepted the user but did not grant the authzid (accept{authz=…})",
                )
            }
            (None, None) => authn_id.clone(),
        };
        Verdict::Accept {
            authn_id,
            authz_id,
            user_data: data,
        }
    };
    // Nobody can be recorded as the sender: an empty name would reach the
    // spool, the sender rules and the log as "authenticated". The script
    // is at fault (a mechanism that carried no name, `accept{user=''}`).
    let accept = |name: Option<String>, authz: Option<String>, data| match accept(name, authz, data)
    {
        Verdict::Accept {
            authn_id, authz_id, ..
        } if authn_id.is_empty() || authz_id.is_empty() => {
            Err("accept with an empty identity: name the user (accept{ user = … })".into())
        }
        verdict => Ok(verdict),
    };
    let t = match value {
        Value::Nil => return Ok(Verdict::reject("the hook returned nothing")),
        Value::Boolean(true) => return accept(None, None, None),
        Value::Boolean(false) => return Ok(Verdict::reject("the hook returned false")),
        Value::Table(t) => t,
        other => return Err(format!("the hook returned a {}", other.type_name()).into()),
    };
    let kind: Option<String> = t.get("verdict").map_err(|e| e.to_string())?;
    match kind.as_deref() {
        Some("accept") => {
            let get = |k: &str| t.get::<Option<String>>(k).map_err(|e| e.to_string());
            let data = match t.get::<Value>("data").map_err(|e| e.to_string())? {
                Value::Nil => None,
                v => {
                    let mut budget = MAX_DATA_VALUES;
                    within_bounds(&v, 0, &mut budget)?;
                    Some(
                        lua.from_value::<serde_json::Value>(v)
                            .map_err(|e| format!("accept: data is not plain data: {e}"))?,
                    )
                }
            };
            accept(get("user")?, get("authz")?, data)
        }
        Some("reject") => {
            let oauth_challenge = oauth_challenge(&t)?;
            refusal(&t, Reply::auth_failed(), &[4, 5]).map(|(reply, disconnect, reason)| {
                Verdict::Reject { reply, disconnect, oauth_challenge, reason }
            })
        }
        Some("defer") => refusal(&t, Reply::auth_temporary_failure(), &[4]).map(
            |(reply, disconnect, reason)| Verdict::Defer { reply, disconnect, reason },
        ),
        other => Err(format!(
            "the hook returned a table whose verdict is {other:?} (use portcullis.accept/reject/defer)"
        ).into()),
    }
}

/// Checks user data against [`MAX_DATA_DEPTH`] and [`MAX_DATA_VALUES`]
/// before it is converted (a table that holds itself stops at the depth).
fn within_bounds(value: &Value, depth: usize, budget: &mut usize) -> Result<(), BadAnswer> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("accept: data holds more than {MAX_DATA_VALUES} values"))?;
    let Value::Table(t) = value else {
        return Ok(());
    };
    if depth == MAX_DATA_DEPTH {
        return Err(format!("accept: data is nested deeper than {MAX_DATA_DEPTH} levels").into());
    }
    for pair in t.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        within_bounds(&key, depth + 1, budget)?;
        within_bounds(&value, depth + 1, budget)?;
    }
    Ok(())
}

/// Most identities or groups an AuthInfo may list: they are stored with
/// every message.
const MAX_AUTH_INFO_ENTRIES: usize = 100;

/// The answer of KumoMTA's `smtp_server_auth_plain`: a boolean or an
/// AuthInfo table. `true` accepts the user; an authzid other than the user
/// is refused, because a boolean cannot say the script looked at it (the
/// reference scripts ignore it).
pub(crate) fn from_kumo(value: Value, authz: &str, authc: &str) -> Result<Verdict, BadAnswer> {
    match value {
        Value::Table(t) => from_auth_info(&t, authz, authc),
        Value::Boolean(true) if authz != authc => Ok(Verdict::reject(
            "authorization identity refused: smtp_server_auth_plain cannot grant another authzid",
        )),
        Value::Boolean(true) => Ok(Verdict::Accept {
            authn_id: authc.to_string(),
            authz_id: authz.to_string(),
            user_data: None,
        }),
        Value::Boolean(false) | Value::Nil => {
            Ok(Verdict::reject("smtp_server_auth_plain returned false"))
        }
        other => Err(format!(
            "smtp_server_auth_plain must return a boolean or an AuthInfo table, not a {}",
            other.type_name()
        )
        .into()),
    }
}

/// KumoMTA's AuthInfo (`{ identities = { { identity = 'u', context = … } },
/// groups = { 'g' } }`): an accept naming who authenticated. Strict, like
/// the boolean: every identity it names must be the user whose password
/// the hook checked (the authzid rule: nothing here can grant another
/// identity, so an AuthInfo naming someone else is a refusal, not a way
/// to act as them). An AuthInfo with no identity is a script mistake. The
/// identities and groups are the session's user data (`auth_info` in the
/// spool JSON and the message hook's `user_data`).
fn from_auth_info(t: &Table, authz: &str, authc: &str) -> Result<Verdict, BadAnswer> {
    let e = |e: mlua::Error| format!("AuthInfo: {e}");
    let identities: Option<Table> = t.get("identities").map_err(e)?;
    let mut names = Vec::new();
    let mut recorded = Vec::new();
    for entry in identities.iter().flat_map(|t| t.sequence_values::<Value>()) {
        if names.len() == MAX_AUTH_INFO_ENTRIES {
            return Err(format!("AuthInfo: more than {MAX_AUTH_INFO_ENTRIES} identities").into());
        }
        let (identity, context) = match entry.map_err(e)? {
            Value::String(s) => (s.to_str().map_err(e)?.to_string(), None),
            Value::Table(entry) => (
                entry
                    .get::<Option<String>>("identity")
                    .map_err(e)?
                    .ok_or("AuthInfo: an identity without `identity`")?,
                entry.get::<Option<String>>("context").map_err(e)?,
            ),
            other => {
                return Err(format!(
                    "AuthInfo: an identity is a table, not a {}",
                    other.type_name()
                )
                .into())
            }
        };
        let mut one = serde_json::Map::new();
        one.insert("identity".into(), identity.clone().into());
        if let Some(context) = context {
            one.insert("context".into(), context.into());
        }
        recorded.push(serde_json::Value::Object(one));
        names.push(identity);
    }
    let mut groups = Vec::new();
    let listed: Option<Table> = t.get("groups").map_err(e)?;
    for group in listed.iter().flat_map(|t| t.sequence_values::<String>()) {
        if groups.len() == MAX_AUTH_INFO_ENTRIES {
            return Err(format!("AuthInfo: more than {MAX_AUTH_INFO_ENTRIES} groups").into());
        }
        groups.push(serde_json::Value::String(group.map_err(e)?));
    }
    let Some(first) = names.first() else {
        return Err("AuthInfo names no identity".into());
    };
    if authz != authc {
        return Ok(Verdict::reject(
            "authorization identity refused: smtp_server_auth_plain cannot grant another authzid",
        ));
    }
    if let Some(other) = names.iter().find(|name| *name != authc) {
        return Ok(Verdict::reject(format!(
            "AuthInfo names {other:?}, not the user who logged in; refused"
        )));
    }
    Ok(Verdict::Accept {
        authn_id: first.clone(),
        authz_id: first.clone(),
        user_data: Some(serde_json::json!({
            "auth_info": { "identities": recorded, "groups": groups }
        })),
    })
}

/// Reply, disconnect flag and log reason of a reject or defer table.
pub(crate) fn refusal(
    t: &Table,
    default: Reply,
    classes: &[u16],
) -> Result<(Reply, bool, String), BadAnswer> {
    let e = |e: mlua::Error| e.to_string();
    let disconnect = t
        .get::<Option<bool>>("disconnect")
        .map_err(e)?
        .unwrap_or(false);
    // A string, or (Halon's form) a list of lines: a multi-line reply.
    let lines: Option<Vec<String>> = match t.get::<Value>("message").map_err(e)? {
        Value::Nil => None,
        Value::Table(list) => {
            let lines: Vec<String> = list
                .sequence_values::<String>()
                .collect::<mlua::Result<_>>()
                .map_err(e)?;
            if lines.is_empty() || lines.len() > MAX_LINES {
                return Err(format!("message must have 1 to {MAX_LINES} lines").into());
            }
            Some(lines)
        }
        _ => Some(vec![t.get::<String>("message").map_err(e)?]),
    };
    let message = lines.as_ref().map(|l| l.join(" "));
    let code: Option<u16> = t.get("code").map_err(e)?;
    let enhanced = enhanced_code(&t.get::<Value>("enhanced").map_err(e)?)?;
    let reason = message
        .clone()
        .unwrap_or_else(|| "refused by the policy".into());
    let code = code.unwrap_or(default.code());
    if !classes.contains(&(code / 100)) || code % 100 > 59 {
        return Err(format!("reply code {code} is not allowed here").into());
    }
    let enhanced = match enhanced {
        Some(s) => Some(s),
        None if code == default.code() => default.status(),
        None => default
            .status()
            .map(|s| EnhancedCode((code / 100) as u8, s.1, s.2)),
    };
    if enhanced.is_some_and(|s| u16::from(s.0) != code / 100) {
        return Err(format!("enhanced code class does not match reply code {code}").into());
    }
    let reply = match lines {
        Some(lines) => Reply::multiline(
            code,
            enhanced,
            lines.iter().map(|l| clean_text(l)).collect(),
        ),
        None => Reply::new(code, enhanced, default.text()),
    };
    Ok((reply, disconnect, reason))
}

/// `"5.7.8"` or `{5, 7, 8}`.
fn enhanced_code(value: &Value) -> Result<Option<EnhancedCode>, BadAnswer> {
    let parts: Vec<u16> = match value {
        Value::Nil => return Ok(None),
        Value::String(s) => s
            .to_string_lossy()
            .split('.')
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("invalid enhanced code {s:?}"))
            })
            .collect::<Result<_, _>>()?,
        Value::Table(t) => t
            .sequence_values::<u16>()
            .collect::<mlua::Result<_>>()
            .map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "enhanced code must be a string, not a {}",
                other.type_name()
            )
            .into())
        }
    };
    match parts.as_slice() {
        [c @ (2 | 4 | 5), s, d] if *s < 1000 && *d < 1000 => {
            Ok(Some(EnhancedCode(*c as u8, *s, *d)))
        }
        _ => Err(format!("invalid enhanced code {parts:?}").into()),
    }
}

/// `reject{ oauth = { status =, schemes =, scope = } }`: the OAuth error
/// JSON (smtp-server's XOAUTH2 failure `data`), each field a short line;
/// a missing one keeps the default's (`invalid_token`, `bearer`, `email`).
fn oauth_challenge(t: &Table) -> Result<Option<Vec<u8>>, BadAnswer> {
    let e = |e: mlua::Error| BadAnswer::from(e.to_string());
    let Some(oauth) = t.get::<Option<Table>>("oauth").map_err(e)? else {
        return Ok(None);
    };
    let mut json = serde_json::Map::new();
    for (key, default) in [
        ("status", "invalid_token"),
        ("schemes", "bearer"),
        ("scope", "email"),
    ] {
        let value = oauth
            .get::<Option<String>>(key)
            .map_err(e)?
            .unwrap_or_else(|| default.to_string());
        if value.len() > 200 || value.chars().any(char::is_control) {
            return Err(format!("oauth.{key} must be one line of at most 200 bytes").into());
        }
        json.insert(key.to_string(), value.into());
    }
    Ok(Some(
        serde_json::Value::Object(json).to_string().into_bytes(),
    ))
}

/// The most lines a refusal's message may have.
const MAX_LINES: usize = 10;

/// One line of printable text, bounded.
fn clean_text(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

/// The reply `kumo.reject(code, text)` or `kumo.disconnect(code, text)`
/// carries. As in KumoMTA, they raise an error (so they end the hook from
/// any depth); the pool finds this value in the error and answers with it
/// instead of treating the error as a script failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kumo.{}({}, {:?})", if *.disconnect { "disconnect" } else { "reject" }, .reply.code(), .reply.text())]
pub(crate) struct KumoRefusal {
    pub reply: Reply,
    pub disconnect: bool,
}

impl KumoRefusal {
    /// The refusal an error carries, however deeply mlua wrapped it.
    pub fn find(error: &mlua::Error) -> Option<&KumoRefusal> {
        match error {
            mlua::Error::CallbackError { cause, .. } => KumoRefusal::find(cause),
            mlua::Error::WithContext { cause, .. } => KumoRefusal::find(cause),
            mlua::Error::ExternalError(e) => e.downcast_ref::<KumoRefusal>(),
            _ => None,
        }
    }

    /// A reject for a 5xx code, a defer for a 4xx one.
    pub fn verdict(&self) -> Verdict {
        let reason = format!("{self}");
        match self.reply.code() / 100 {
            4 => Verdict::Defer {
                reply: self.reply.clone(),
                disconnect: self.disconnect,
                reason,
            },
            _ => Verdict::Reject {
                reply: self.reply.clone(),
                disconnect: self.disconnect,
                oauth_challenge: None,
                reason,
            },
        }
    }
}

/// `kumo.reject(code, text)` and `kumo.disconnect(code, text)`. The code
/// must be `4xx` or `5xx` and the text one line (a CR or LF would let a
/// script, or a user name it echoes, inject a reply line): anything else
/// is a script error, never a reply.
pub(crate) fn install_kumo_refusals(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    for (name, disconnect) in [("reject", false), ("disconnect", true)] {
        let f = lua.create_function(move |_, (code, text): (Value, Option<mlua::String>)| {
            let code = match code {
                Value::Integer(c) => u16::try_from(c).ok(),
                Value::Number(c) if c.fract() == 0.0 && (0.0..=999.0).contains(&c) => {
                    Some(c as u16)
                }
                _ => None,
            }
            .filter(|c| matches!(c / 100, 4 | 5) && c % 100 <= 59)
            .ok_or_else(|| {
                mlua::Error::runtime(format!("kumo.{name}: the reply code must be 4xx or 5xx"))
            })?;
            let text = text.map(|t| t.to_string_lossy()).unwrap_or_default();
            if text.contains(['\r', '\n']) {
                return Err(mlua::Error::runtime(format!(
                    "kumo.{name}: the reply text must not contain CR or LF"
                )));
            }
            let text = match clean_text(&text) {
                t if t.trim().is_empty() => "Refused by policy".to_string(),
                t => t,
            };
            Err::<(), _>(mlua::Error::external(KumoRefusal {
                reply: Reply::new(code, None, text),
                disconnect,
            }))
        })?;
        kumo.set(name, f)?;
    }
    Ok(())
}
