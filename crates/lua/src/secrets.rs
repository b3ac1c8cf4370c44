//! `kumo.secrets.load{…}`: a secret from the script itself (`key_data`), a
//! file (`key_path`), or HashiCorp Vault / OpenBao KV version 2
//! (`vault_mount`, `vault_path`, optional `vault_key`, default `"key"`).
//!
//! Vault's address and token come from the call (`vault_address`,
//! `vault_token`), else the config, else `VAULT_ADDR` / `VAULT_TOKEN`. The
//! token never appears in an error or a log line. The HTTP request blocks
//! (the hook runs on the blocking pool) and is bounded by the time left
//! before the hook's deadline.
//!
//! **One path, one secret.** Scripts build `vault_path` from what the client
//! sent (`'smtp-auth/' .. authc`). Pasted into a URL as is, `bob#x` and
//! `bob?v=9` would fetch bob's secret (the rest is a fragment or a query)
//! while the brute-force defence counts another user, and `x/../bob` would
//! be bob after normalisation. So the mount and the path are split at `/`,
//! a segment that is empty, `.` or `..`, or holds `#` or `?`, is refused,
//! and every segment is percent-encoded ([`vault_url`]).

use std::sync::Arc;

use mlua::{Lua, Table};
use portcullis_sasl::Secret;

use crate::pool::Shared;
use crate::sandbox::CallDeadline;

/// Vault settings from the config.
#[derive(Debug, Clone, Default)]
pub(crate) struct VaultSettings {
    pub address: Option<String>,
    pub token: Option<Secret>,
    pub timeout: std::time::Duration,
    /// Vault gave no answer to the last request (no connection, a
    /// timeout, a 5xx): logged once when it goes and once when it is back.
    pub down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl VaultSettings {
    /// Records whether the last request got an answer from Vault.
    fn answered(&self, answered: bool, error: &str) {
        use std::sync::atomic::Ordering;
        let was_down = self.down.swap(!answered, Ordering::Relaxed);
        match (was_down, answered) {
            (false, false) => {
                tracing::error!(%error, "Vault unreachable; logins that need a secret get 454 until it answers")
            }
            (true, true) => tracing::warn!("Vault answers again"),
            _ => {}
        }
    }
}

pub(crate) fn load(lua: &Lua, params: Table) -> mlua::Result<mlua::String> {
    if let Some(data) = params.get::<Option<mlua::String>>("key_data")? {
        return Ok(data);
    }
    if let Some(path) = params.get::<Option<String>>("key_path")? {
        let fail = |e: String| mlua::Error::runtime(format!("kumo.secrets.load: {e}"));
        let resolved = shared(lua)?
            .paths
            .check(&path)
            .map_err(|e| fail(e.to_string()))?;
        let bytes = read_key_file(&resolved).map_err(|e| fail(format!("{path}: {e}")))?;
        return lua.create_string(bytes);
    }
    let mount: Option<String> = params.get("vault_mount")?;
    let path: Option<String> = params.get("vault_path")?;
    let (Some(mount), Some(path)) = (mount, path) else {
        return Err(mlua::Error::runtime(
            "kumo.secrets.load: give key_data, key_path, or vault_mount and vault_path",
        ));
    };
    let key = params
        .get::<Option<String>>("vault_key")?
        .unwrap_or_else(|| "key".into());
    let shared = shared(lua)?;
    let settings = &shared.vault;
    let address = params
        .get::<Option<String>>("vault_address")?
        .or_else(|| settings.address.clone())
        .or_else(|| std::env::var("VAULT_ADDR").ok())
        .ok_or_else(|| {
            mlua::Error::runtime(
                "kumo.secrets.load: no Vault address (vault_address, config or VAULT_ADDR)",
            )
        })?;
    let token = match params.get::<Option<String>>("vault_token")? {
        Some(t) => Secret::from(t),
        None => settings
            .token
            .clone()
            .or_else(|| std::env::var("VAULT_TOKEN").ok().map(Secret::from))
            .ok_or_else(|| {
                mlua::Error::runtime("kumo.secrets.load: no Vault token (config or VAULT_TOKEN)")
            })?,
    };
    // Never past the hook's own deadline: a slow Vault must not hold the
    // thread after the client got its 454.
    let timeout = CallDeadline::remaining(lua, settings.timeout).min(settings.timeout);
    let value = vault_kv2_get(&address, &token, &mount, &path, &key, timeout);
    match &value {
        Err(VaultFailure::Unreachable(e)) => settings.answered(false, e),
        _ => settings.answered(true, ""),
    }
    let value = value.map_err(|e| {
        let text = format!("kumo.secrets.load: {mount}/{path}: {}", e.text());
        match e {
            // Vault down is not the client's fault: the pool defers.
            VaultFailure::Unreachable(_) => mlua::Error::external(crate::http::Unreachable(text)),
            VaultFailure::Refused(_) => mlua::Error::runtime(text),
        }
    })?;
    lua.create_string(value)
}

/// The largest key file read: a key or a password is small, and the read
/// happens outside the Lua state's memory limit.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// Why a key file (or a required Lua file) could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}

/// Why a Vault mount or path is refused; names the offending segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VaultPathError {
    #[error("{0} has an empty, '.' or '..' segment: refused")]
    Empty(&'static str),
    #[error("{what} segment {segment:?} holds '#' or '?': refused")]
    Reserved { what: &'static str, segment: String },
}

/// A regular file of at most [`MAX_KEY_FILE`] bytes (a FIFO or a device
/// could block the hook or never end).
pub(crate) fn read_key_file(path: &std::path::Path) -> Result<Vec<u8>, KeyFileError> {
    read_bounded(path, MAX_KEY_FILE)
}

/// A regular file of at most `max` bytes.
pub(crate) fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, KeyFileError> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile);
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut bytes))?;
    if bytes.len() as u64 > max {
        return Err(KeyFileError::TooLarge(max));
    }
    Ok(bytes)
}

/// What the policy's states share.
fn shared(lua: &Lua) -> mlua::Result<Arc<Shared>> {
    Ok(lua
        .app_data_ref::<Arc<Shared>>()
        .ok_or_else(|| mlua::Error::runtime("kumo.secrets.load: no policy context"))?
        .clone())
}

/// Bytes left as they are in a path segment: RFC 3986's unreserved ones.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `{address}/v1/{mount}/data/{path}`, each segment of `mount` and `path`
/// checked and percent-encoded. An error names the offending segment.
pub(crate) fn vault_url(address: &str, mount: &str, path: &str) -> Result<String, VaultPathError> {
    let mut url = format!("{}/v1", address.trim_end_matches('/'));
    let mount = mount.trim_matches('/');
    let segments = mount
        .split('/')
        .map(|s| (s, "vault_mount"))
        .chain(std::iter::once(("data", "")))
        .chain(path.split('/').map(|s| (s, "vault_path")));
    for (segment, what) in segments {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(VaultPathError::Empty(what));
        }
        if segment.contains(['#', '?']) {
            return Err(VaultPathError::Reserved {
                what,
                segment: segment.to_string(),
            });
        }
        url.push('/');
        url.extend(percent_encoding::utf8_percent_encode(segment, SEGMENT));
    }
    Ok(url)
}

/// `GET {address}/v1/{mount}/data/{path}` and `.data.data[key]`.
/// Why a secret could not be read from Vault.
enum VaultFailure {
    /// No answer: no connection, a timeout, a 5xx, a body cut short.
    Unreachable(String),
    /// Vault answered, and the answer has no such secret or key.
    Refused(String),
}

impl VaultFailure {
    fn text(&self) -> &str {
        match self {
            VaultFailure::Unreachable(text) | VaultFailure::Refused(text) => text,
        }
    }
}

fn vault_kv2_get(
    address: &str,
    token: &Secret,
    mount: &str,
    path: &str,
    key: &str,
    timeout: std::time::Duration,
) -> Result<String, VaultFailure> {
    use VaultFailure::{Refused, Unreachable};
    let url = vault_url(address, mount, path).map_err(|e| Refused(e.to_string()))?;
    let token = std::str::from_utf8(token.expose())
        .map_err(|_| Refused("the token is not UTF-8".into()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .header("X-Vault-Token", token)
        .call()
        .map_err(|e| Unreachable(format!("Vault request failed: {e}")))?;
    let status = response.status().as_u16();
    if status == 404 {
        return Err(Refused("no such secret".into()));
    }
    if status >= 500 {
        return Err(Unreachable(format!("Vault answered HTTP {status}")));
    }
    if status != 200 {
        return Err(Refused(format!("Vault answered HTTP {status}")));
    }
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| Unreachable(format!("reading Vault's answer: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Unreachable(format!("Vault's answer is not JSON: {e}")))?;
    match json.pointer("/data/data").and_then(|d| d.get(key)) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(Refused(format!("the secret has no key {key:?}"))),
    }
}
