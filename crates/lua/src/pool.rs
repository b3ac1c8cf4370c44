//! One generation of a policy: the script's source, the caches its states
//! share, and the pool of idle states. A reload makes a new generation;
//! the old one is dropped when its last call returns.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{Function, Lua, Value};

use crate::events::{self, Namespace};
use crate::mechanism::MechanismStep;
use crate::memoize::Caches;
use crate::message::{MessageFacts, MessageVerdict};
use crate::paths::AllowedPaths;
use crate::request::{AuthRequest, ConnFacts, ConnMeta};
use crate::sandbox::{State, TIMED_OUT};
use crate::secrets::VaultSettings;
use crate::verdict::{self, KumoRefusal, Verdict};
use crate::{PolicyError, PolicyOptions};

/// What every state of a generation shares (Lua app data).
pub(crate) struct Shared {
    pub memo: Arc<Caches>,
    pub vault: VaultSettings,
    pub paths: AllowedPaths,
    /// The script's directory, where `require` looks first.
    pub script_dir: PathBuf,
}

pub(crate) struct Generation {
    path: PathBuf,
    source: String,
    shared: Arc<Shared>,
    memory_limit: usize,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<State>>,
    pub registered: Vec<&'static str>,
    /// Names declared with `portcullis.mechanism`.
    pub mechanisms: Vec<String>,
    /// What the script registered or called that portcullis ignores
    /// (KumoMTA-only events and configuration), one line each.
    pub ignored: Vec<String>,
}

impl Generation {
    /// Whether Vault answered the last request a script made of it.
    pub fn vault_up(&self) -> bool {
        !self
            .shared
            .vault
            .down
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn load(options: &PolicyOptions, memo: Arc<Caches>) -> Result<Generation, PolicyError> {
        let path = options.script.clone();
        let script_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let source = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let mut generation = Generation {
            path,
            source,
            shared: Arc::new(Shared {
                memo,
                vault: VaultSettings {
                    address: options.vault_address.clone(),
                    token: options.vault_token.clone(),
                    timeout: options.hook_timeout,
                    down: Default::default(),
                },
                paths: AllowedPaths::new(&options.allowed_paths),
                script_dir,
            }),
            memory_limit: options.memory_limit,
            timeout: options.hook_timeout,
            max_idle: options.max_idle_states,
            idle: Mutex::default(),
            registered: Vec::new(),
            mechanisms: Vec::new(),
            ignored: Vec::new(),
        };
        let first = generation.new_state()?;
        generation.registered = events::all()
            .filter(|e| {
                crate::kumo::handler(&first.lua, e.namespace, e.name).is_ok_and(|h| h.is_some())
            })
            .map(|e| e.name)
            .collect();
        generation.registered.dedup();
        generation.ignored = crate::kumo::Ignored::lines(&first.lua);
        for line in &generation.ignored {
            tracing::info!(script = %generation.path.display(), "policy: {line}");
        }
        generation.mechanisms =
            crate::mechanism::declared(&first.lua).map_err(|e| PolicyError::Script {
                path: generation.path.clone(),
                message: e.to_string(),
            })?;
        if generation.has(events::SMTP_SERVER_AUTH)
            && generation.has(events::SMTP_SERVER_AUTH_PLAIN)
        {
            tracing::warn!(script = %generation.path.display(), "both smtp_server_auth and smtp_server_auth_plain are registered; smtp_server_auth decides");
        }
        generation.give_back(first);
        Ok(generation)
    }

    fn has(&self, event: &str) -> bool {
        self.registered.contains(&event)
    }

    pub fn decides(&self, mechanism: &str) -> bool {
        self.has(events::SMTP_SERVER_AUTH)
            || (self.has(events::SMTP_SERVER_AUTH_PLAIN) && matches!(mechanism, "PLAIN" | "LOGIN"))
    }

    /// Whether `smtp_server_auth` is registered: it also reviews logins
    /// our own verification accepted.
    pub fn reviews_verified(&self) -> bool {
        self.has(events::SMTP_SERVER_AUTH)
    }

    /// A state with the script run (and `init` called) in it.
    fn new_state(&self) -> Result<State, PolicyError> {
        let script_error = |e: mlua::Error| PolicyError::Script {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let state = State::new(self.shared.clone(), self.memory_limit).map_err(script_error)?;
        state.set_deadline(Instant::now() + self.timeout);
        let loaded = state
            .lua
            .load(&self.source)
            .set_name(format!("@{}", self.path.display()))
            .exec()
            .and_then(|()| {
                match crate::kumo::handler(&state.lua, Namespace::Kumo, events::INIT)? {
                    Some(init) => init.call::<()>(()),
                    None => Ok(()),
                }
            });
        state.clear_deadline();
        loaded.map_err(script_error)?;
        Ok(state)
    }

    fn take(&self) -> Result<State, PolicyError> {
        // Invariant: the idle lock is held only to push or pop.
        let idle = self.idle.lock().expect("pool lock").pop();
        match idle {
            Some(state) => Ok(state),
            None => self.new_state(),
        }
    }

    fn give_back(&self, state: State) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push(state);
        }
    }

    pub fn authenticate(
        &self,
        request: &AuthRequest,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> Verdict {
        let verdict = self.run(
            conn,
            meta,
            |lua| self.call(lua, request, conn, meta),
            Verdict::defer,
            Verdict::script_error,
            KumoRefusal::verdict,
        );
        record(meta, verdict)
    }

    pub fn mechanism_step(
        &self,
        step: &MechanismStep,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> Verdict {
        let run = |lua: &Lua| crate::mechanism::call(lua, step, conn, meta);
        let verdict = self.run(
            conn,
            meta,
            run,
            Verdict::defer,
            Verdict::script_error,
            KumoRefusal::verdict,
        );
        record(meta, verdict)
    }

    pub fn message_received(
        &self,
        msg: &MessageFacts,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> MessageVerdict {
        let run = |lua: &Lua| crate::message::call(lua, msg, conn, meta);
        self.run(
            conn,
            meta,
            run,
            MessageVerdict::defer,
            MessageVerdict::defer,
            |refusal| MessageVerdict::Refuse {
                reply: refusal.reply.clone(),
                reason: refusal.to_string(),
            },
        )
    }

    /// `portcullis_identity_suspect`: no connection, so not through
    /// [`Generation::run`]; the same deadline and state hygiene.
    pub fn identity_suspect(&self, suspect: &serde_json::Value) -> Option<String> {
        let state = match self.take() {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(%error, "policy: cannot start a Lua state");
                return None;
            }
        };
        let deadline = Instant::now() + self.timeout;
        state.set_deadline(deadline);
        let result = crate::suspect::call(&state.lua, suspect);
        state.clear_deadline();
        let overran = Instant::now() >= deadline
            || matches!(&result, Err(e) if e.to_string().contains(TIMED_OUT));
        if !overran {
            self.give_back(state);
        }
        match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(mistake)) => {
                tracing::error!(script = %self.path.display(), error = %mistake, "policy: portcullis_identity_suspect answered wrongly; keeping the configured answer");
                None
            }
            Err(error) => {
                tracing::error!(script = %self.path.display(), %error, "policy: portcullis_identity_suspect failed; keeping the configured answer");
                None
            }
        }
    }

    /// Borrows a state, runs `hook` under the deadline, and turns a
    /// timeout (or no state) into `defer(reason)`, `kumo.reject` /
    /// `kumo.disconnect` into `refused(reply)`, another Lua error or an
    /// invalid answer into `script_error(reason)`.
    fn run<T>(
        &self,
        conn: &ConnFacts,
        meta: &ConnMeta,
        hook: impl FnOnce(&Lua) -> mlua::Result<Result<T, crate::verdict::BadAnswer>>,
        defer: impl Fn(String) -> T,
        script_error: impl Fn(String) -> T,
        refused: impl Fn(&KumoRefusal) -> T,
    ) -> T {
        let state = match self.take() {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(%error, "policy: cannot start a Lua state");
                return defer("cannot start a Lua state".into());
            }
        };
        for (key, value) in conn.kumo_meta() {
            if meta.get(key).is_none() {
                meta.set(key, value);
            }
        }
        // It changes within a connection (STARTTLS, AUTH): always current.
        meta.set("reception_protocol", conn.protocol.clone().into());
        let deadline = Instant::now() + self.timeout;
        state.set_deadline(deadline);
        let result = hook(&state.lua);
        state.clear_deadline();
        // A state stopped mid-call may hold half-done work (a coroutine
        // stuck in a loop, globals half updated): it is dropped, not reused.
        let overran = Instant::now() >= deadline
            || matches!(&result, Err(e) if e.to_string().contains(TIMED_OUT));
        if !overran {
            self.give_back(state);
        }
        match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(mistake)) => {
                tracing::error!(script = %self.path.display(), error = %mistake, "policy: the hook's answer is invalid; deferring");
                script_error(format!("invalid answer: {mistake}"))
            }
            Err(error) if !overran && KumoRefusal::find(&error).is_some() => {
                refused(KumoRefusal::find(&error).expect("checked above"))
            }
            Err(error) if !overran && crate::http::Unreachable::find(&error).is_some() => {
                let reason = crate::http::Unreachable::find(&error).expect("checked above");
                tracing::error!(script = %self.path.display(), error = %reason, "policy: a service the script asked is unreachable; deferring");
                defer(reason.to_string())
            }
            Err(_) if overran => {
                tracing::error!(script = %self.path.display(), timeout = ?self.timeout, "policy: the hook timed out; deferring");
                defer("the hook timed out".into())
            }
            Err(error) => {
                tracing::error!(script = %self.path.display(), %error, "policy: script error; deferring");
                script_error("script error".into())
            }
        }
    }

    /// Runs the hook that decides. The outer `Err` is a Lua error, the inner
    /// one an answer the script should not have given.
    fn call(
        &self,
        lua: &Lua,
        request: &AuthRequest,
        conn: &ConnFacts,
        meta: &ConnMeta,
    ) -> mlua::Result<Result<Verdict, crate::verdict::BadAnswer>> {
        if let Some(hook) =
            crate::kumo::handler(lua, Namespace::Portcullis, events::SMTP_SERVER_AUTH)?
        {
            let auth = lua.create_table()?;
            auth.set("mechanism", request.mechanism.as_str())?;
            auth.set("user", request.user.as_str())?;
            if let Some(password) = &request.password {
                auth.set("password", lua.create_string(password.expose())?)?;
            }
            auth.set("authzid", request.authzid.as_deref())?;
            auth.set("verified", request.verified)?;
            let answer: Value = hook.call((auth, conn.to_lua(lua, meta)?))?;
            return Ok(verdict::from_general(
                lua,
                answer,
                &request.user,
                request.authzid.as_deref(),
                request.verified,
            ));
        }
        let kumo: Option<Function> =
            crate::kumo::handler(lua, Namespace::Kumo, events::SMTP_SERVER_AUTH_PLAIN)?;
        match (kumo, &request.password) {
            (Some(hook), Some(password)) => {
                let authz = request.authzid.as_deref().unwrap_or(&request.user);
                let password = lua.create_string(password.expose())?;
                let answer: Value =
                    hook.call((authz, request.user.as_str(), password, meta.clone()))?;
                Ok(verdict::from_kumo(answer, authz, &request.user))
            }
            _ => Ok(Err(format!("no hook decides {}", request.mechanism).into())),
        }
    }
}

/// An accept is recorded in the connection's metadata for later hooks and
/// the spool.
fn record(meta: &ConnMeta, verdict: Verdict) -> Verdict {
    if let Verdict::Accept {
        authn_id,
        authz_id,
        user_data,
    } = &verdict
    {
        meta.set("authn_id", authn_id.clone().into());
        meta.set("authz_id", authz_id.clone().into());
        meta.set_user_data(user_data.clone());
    }
    verdict
}
