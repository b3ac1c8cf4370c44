//! Loading the Lua policy named in the config, and reloading it on SIGHUP.

use std::sync::Arc;

use anyhow::Result;
use portcullis_config::Config;
use portcullis_lua::{Policy, PolicyOptions};
use portcullis_sasl::Secret;

/// The policy, if the config names a script; a script that does not load is
/// an error (so `check-config` and `serve` refuse it).
pub fn load(config: &Config) -> Result<Option<Arc<Policy>>> {
    let Some(p) = &config.policy else {
        return Ok(None);
    };
    let options = PolicyOptions {
        script: p.script.clone(),
        hook_timeout: p.hook_timeout,
        memory_limit: p.memory_limit,
        max_idle_states: p.max_idle_states,
        vault_address: p.vault_address.clone(),
        vault_token: p.vault_token.clone().map(Secret::from),
        allowed_paths: p.allowed_paths.clone(),
    };
    Ok(Some(Arc::new(Policy::load(options)?)))
}

/// Reloads the script on each SIGHUP. A script that fails to load leaves
/// the running one in place, and the log says why.
pub async fn reload_on_sighup(policy: Arc<Policy>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the policy will not reload");
            return;
        };
        // The advertised mechanisms were fixed at start (see `with_policy`).
        let advertised = policy.mechanisms();
        while hangup.recv().await.is_some() {
            let p = policy.clone();
            let reloaded = tokio::task::spawn_blocking(move || p.reload()).await;
            match reloaded {
                Ok(Ok(())) => {
                    tracing::info!(script = %policy.script().display(), events = ?policy.registered(), "policy reloaded");
                    if policy.mechanisms() != advertised {
                        tracing::warn!(declared = ?policy.mechanisms(), advertised = ?advertised, "the script's SASL mechanisms changed: restart to advertise them (attempts with a dropped one are deferred)");
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "policy reload failed; keeping the running script")
                }
                Err(_) => tracing::error!("policy reload task failed; keeping the running script"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = policy;
}
