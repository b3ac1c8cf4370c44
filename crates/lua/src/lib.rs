//! Policy in Lua: the operator's script decides who gets in.
//!
//! A [`Policy`] owns one compiled script. It answers an AUTH attempt with a
//! [`Verdict`] (accept with an identity and user data, reject, defer) by
//! calling the script's hook:
//!
//! - `portcullis.on('smtp_server_auth', function(auth, conn) … end)`, the
//!   general hook, for every mechanism; or
//! - `kumo.on('smtp_server_auth_plain', function(authz, authc, password,
//!   conn_meta) … end)`, KumoMTA's hook, for PLAIN and LOGIN, so KumoMTA
//!   scripts run unchanged (with `require 'sqlite'`, `kumo.memoize` and
//!   `kumo.secrets.load`).
//!
//! Every event the scripts may register is declared once, in [`events`].
//!
//! **States: a pool, on the blocking pool.** Each call borrows a Lua state
//! from a pool (making one when all are busy) and runs the hook
//! synchronously; the caller runs [`Policy::authenticate`] on tokio's
//! blocking pool. So a hook that waits on SQLite or Vault holds one blocking
//! thread and one state, never an async worker, and other sessions go on.
//! One async state was the alternative: it needs every Rust function the
//! script calls to be async, and a hook that computes (rather than waits)
//! would run on an async worker and stall the sessions that share it. The
//! pool costs memory per state (a few hundred KiB) and a script load per new
//! state; measured numbers are in `docs/policy.md`.
//!
//! **Sandbox.** Only `string`, `table`, `math`, `utf8`, `coroutine` and an
//! `os` that reads the clock and the environment are loaded; `io`,
//! `os.execute`, `dofile` and `loadfile` do not exist. `require` knows the
//! built-in modules and Lua files under the allowed directories (by
//! default beside the script).
//! Each state has a memory limit, and each call a deadline enforced by an
//! instruction-count hook in every coroutine, and by a step budget in the
//! pattern functions: a script that loops is stopped, the attempt
//! deferred, and the state dropped.
//!
//! **Files.** `require`, `kumo.secrets.load{key_path=…}` and the `sqlite` module reach
//! only files under the directories the config allows ([`paths`]).
//!
//! **Reload.** [`Policy::reload`] compiles the script into a fresh state
//! first; only if that works does it replace the generation (and its
//! states; `kumo.memoize` caches outlive it unless declared
//! `invalidate_with_epoch`). Calls in flight finish on the old one.
//!
//! **Network.** Vault's HTTP API and `kumo.http` (the operator's own user
//! API), both through ureq on the hook's blocking thread, bounded by the
//! hook's deadline; an unreachable service defers the attempt (`454`, not
//! counted against the client). No SMTP: the server maps a [`Verdict`] to
//! its session's outcome.

mod digest;
pub mod events;
mod formats;
mod http;
mod kumo;
mod mechanism;
mod memoize;
mod message;
mod paths;
mod patterns;
mod pool;
mod request;
mod sandbox;
mod secrets;
mod sqlite;
mod suspect;
mod verdict;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use portcullis_sasl::Secret;

pub use mechanism::MechanismStep;
pub use message::{MessageFacts, MessageVerdict};
pub use request::{AuthRequest, CertFacts, ConnFacts, ConnMeta, TlsFacts};
pub use verdict::{BadAnswer, Verdict};

/// The conversions of a hook's answer, for the fuzz targets: Lua values
/// the fuzzer builds go through them as a script's answer would. Not an
/// API.
#[doc(hidden)]
pub mod fuzzing {
    pub use mlua;

    use crate::{BadAnswer, MessageVerdict, Verdict};

    /// What `smtp_server_auth` returned, as the pool converts it.
    pub fn auth_verdict(
        lua: &mlua::Lua,
        value: mlua::Value,
        user: &str,
        authzid: Option<&str>,
        authzid_checked: bool,
    ) -> Result<Verdict, BadAnswer> {
        crate::verdict::from_general(lua, value, user, authzid, authzid_checked)
    }

    /// What KumoMTA's `smtp_server_auth_plain` returned.
    pub fn kumo_verdict(
        value: mlua::Value,
        authz: &str,
        authc: &str,
    ) -> Result<Verdict, BadAnswer> {
        crate::verdict::from_kumo(value, authz, authc)
    }

    /// What `smtp_server_message_received` returned.
    pub fn message_verdict(value: mlua::Value) -> Result<MessageVerdict, BadAnswer> {
        crate::message::verdict(value)
    }
}

/// Why a script could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("cannot read policy script {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The script does not compile, fails while loading, or misuses the API
    /// (an unknown event, a hook registered twice).
    #[error("policy script {path}: {message}")]
    Script { path: PathBuf, message: String },
}

/// How a policy runs.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// The Lua file.
    pub script: PathBuf,
    /// The longest a hook may run; past it the attempt is deferred.
    pub hook_timeout: Duration,
    /// Bytes of memory one Lua state may allocate.
    pub memory_limit: usize,
    /// Idle states kept for reuse.
    pub max_idle_states: usize,
    /// Vault's address (`VAULT_ADDR` when `None`).
    pub vault_address: Option<String>,
    /// Vault's token (`VAULT_TOKEN` when `None`).
    pub vault_token: Option<Secret>,
    /// The directories under which `kumo.secrets.load{key_path=…}` may read
    /// and `sqlite` may open, create or attach files.
    pub allowed_paths: Vec<PathBuf>,
}

impl PolicyOptions {
    /// Defaults for `script`: 5 s per hook, 64 MiB per state, 8 idle
    /// states, files only under the script's directory.
    pub fn new(script: impl Into<PathBuf>) -> Self {
        let script: PathBuf = script.into();
        let beside = script.parent().map(Path::to_path_buf).unwrap_or_default();
        PolicyOptions {
            script,
            allowed_paths: vec![beside],
            hook_timeout: Duration::from_secs(5),
            memory_limit: 64 * 1024 * 1024,
            max_idle_states: 8,
            vault_address: None,
            vault_token: None,
        }
    }
}

/// A loaded policy script, safe to share between connections.
pub struct Policy {
    options: PolicyOptions,
    /// `kumo.memoize`'s caches: they outlive reloads, as KumoMTA's do.
    memo: Arc<memoize::Caches>,
    current: RwLock<Arc<pool::Generation>>,
}

impl Policy {
    /// Reads, compiles and runs the script once, so every error shows now.
    pub fn load(options: PolicyOptions) -> Result<Policy, PolicyError> {
        let memo = Arc::new(memoize::Caches::default());
        let generation = pool::Generation::load(&options, memo.clone())?;
        Ok(Policy {
            options,
            memo,
            current: RwLock::new(Arc::new(generation)),
        })
    }

    /// The script file.
    pub fn script(&self) -> &Path {
        &self.options.script
    }

    /// Loads the script again. On error the running generation stays and the
    /// error says why. May block (reads the file, runs the script).
    pub fn reload(&self) -> Result<(), PolicyError> {
        // A new epoch: caches declared `invalidate_with_epoch` start empty.
        self.memo.new_epoch();
        let generation = Arc::new(pool::Generation::load(&self.options, self.memo.clone())?);
        // Invariant: the lock is only held to swap or clone an Arc, so it
        // cannot be poisoned by a panicking hook.
        *self.current.write().expect("policy lock") = generation;
        Ok(())
    }

    /// The events the current script registered.
    /// Whether Vault answered the last `kumo.secrets.load` that asked it
    /// (true while none has).
    pub fn vault_up(&self) -> bool {
        self.generation().vault_up()
    }

    pub fn registered(&self) -> Vec<&'static str> {
        self.generation().registered.clone()
    }

    /// What the current script registered or called that portcullis
    /// accepts but ignores (KumoMTA-only events and configuration calls),
    /// one line each, e.g. `event get_queue_config: KumoMTA-only, ignored`.
    pub fn ignored(&self) -> Vec<String> {
        self.generation().ignored.clone()
    }

    /// Whether the script decides this mechanism (else the store does):
    /// `smtp_server_auth` decides all; `smtp_server_auth_plain` decides
    /// PLAIN and LOGIN.
    pub fn decides(&self, mechanism: &str) -> bool {
        self.generation().decides(mechanism)
    }

    /// Whether the script reviews logins our own verification accepted
    /// (CRAM-MD5, SCRAM, tokens, EXTERNAL): only `smtp_server_auth` does,
    /// called with `auth.verified = true`.
    pub fn reviews_verified(&self) -> bool {
        self.generation().reviews_verified()
    }

    /// The SASL mechanisms the script declared with `portcullis.mechanism`.
    pub fn mechanisms(&self) -> Vec<String> {
        self.generation().mechanisms.clone()
    }

    /// Runs one round of a script mechanism: a [`Verdict::Challenge`] to
    /// send, or the final verdict. Blocks: call it off the async workers.
    pub fn mechanism_step(
        &self,
        step: &MechanismStep,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> Verdict {
        self.generation().mechanism_step(step, conn, meta)
    }

    /// Whether the script judges messages (`smtp_server_message_received`).
    pub fn checks_messages(&self) -> bool {
        let registered = self.generation().registered.clone();
        registered.contains(&events::SMTP_SERVER_MESSAGE_RECEIVED)
    }

    /// Asks `smtp_server_message_received` about a message before it is
    /// spooled. Blocks: call it off the async workers. A script error or a
    /// timeout is a deferring [`MessageVerdict::Refuse`].
    pub fn message_received(
        &self,
        msg: &MessageFacts,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> MessageVerdict {
        self.generation().message_received(msg, conn, meta)
    }

    /// Tells `portcullis_identity_suspect` about a signal; the answer the
    /// script picked instead of the configured one, if any. Blocks: call
    /// it off the async workers. A script error or timeout keeps the
    /// configured answer.
    pub fn identity_suspect(&self, suspect: &serde_json::Value) -> Option<String> {
        let registered = self.generation().registered.clone();
        if !registered.contains(&events::IDENTITY_SUSPECT) {
            return None;
        }
        self.generation().identity_suspect(suspect)
    }

    /// The longest a hook may run.
    pub fn hook_timeout(&self) -> Duration {
        self.options.hook_timeout
    }

    /// Asks the script about one AUTH attempt. Blocks while the hook runs:
    /// call it off the async workers. Never fails: a timeout is a
    /// [`Verdict::Defer`], a script error a [`Verdict::ScriptError`], no
    /// answer a [`Verdict::Reject`].
    pub fn authenticate(
        &self,
        request: &AuthRequest,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> Verdict {
        self.generation().authenticate(request, conn, meta)
    }

    fn generation(&self) -> Arc<pool::Generation> {
        // Invariant: see `reload`.
        self.current.read().expect("policy lock").clone()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_library;
