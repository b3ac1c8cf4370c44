//! The `policy` key and the `[lua]` table: which Lua script decides AUTH,
//! and the limits it runs under. The script itself is compiled by
//! `portcullis-lua`; here only paths and numbers are checked.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{renamed, Unit};
use crate::error::{ConfigError, Deprecation};
use crate::validate::Paths;

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// `[lua]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLua {
    #[serde(default, with = "crate::duration::option")]
    pub hook_timeout: Option<Duration>,
    /// Deprecated: `hook_timeout`.
    pub hook_timeout_ms: Option<u64>,
    pub memory_limit: Option<usize>,
    pub max_idle_states: Option<usize>,
    pub vault_address: Option<String>,
    pub vault_token: Option<String>,
    pub allowed_paths: Option<Vec<PathBuf>>,
}

/// The policy script and how it runs.
#[derive(Clone)]
pub struct Policy {
    /// The script; relative paths are taken from the config file's directory.
    pub script: PathBuf,
    pub hook_timeout: Duration,
    pub memory_limit: usize,
    pub max_idle_states: usize,
    /// Vault for `kumo.secrets.load`; `VAULT_ADDR` / `VAULT_TOKEN` otherwise.
    pub vault_address: Option<String>,
    pub vault_token: Option<String>,
    /// The directories under which a script may read files
    /// (`kumo.secrets.load{key_path=…}`) and open or attach SQLite
    /// databases; default: the config file's directory and the data
    /// directory.
    pub allowed_paths: Vec<PathBuf>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("script", &self.script)
            .field("hook_timeout", &self.hook_timeout)
            .field("memory_limit", &self.memory_limit)
            .field("max_idle_states", &self.max_idle_states)
            .field("vault_address", &self.vault_address)
            .field("vault_token", &self.vault_token.as_ref().map(|_| "***"))
            .field("allowed_paths", &self.allowed_paths)
            .finish()
    }
}

pub(crate) fn validate(
    script: Option<PathBuf>,
    lua: Option<RawLua>,
    paths: &Paths,
    deprecations: &mut Vec<Deprecation>,
) -> Result<Option<Policy>, ConfigError> {
    let (base, data_dir) = (paths.base, paths.data_dir);
    let Some(script) = script else {
        if lua.is_some() {
            return Err(invalid(
                "lua",
                "set `policy` to the script these settings are for",
            ));
        }
        return Ok(None);
    };
    let lua = lua.unwrap_or_default();
    let hook_timeout = renamed(
        ("lua.hook_timeout", lua.hook_timeout),
        ("lua.hook_timeout_ms", lua.hook_timeout_ms),
        Unit::Millis,
        deprecations,
    )?
    .unwrap_or(Duration::from_secs(5));
    if hook_timeout.is_zero() {
        return Err(invalid("lua.hook_timeout", "must be positive, like 500ms"));
    }
    let memory_limit = lua.memory_limit.unwrap_or(64 * 1024 * 1024);
    if memory_limit < 1024 * 1024 {
        return Err(invalid(
            "lua.memory_limit",
            "must be at least 1 MiB (1048576)",
        ));
    }
    let allowed_paths = match lua.allowed_paths {
        Some(list) => list.into_iter().map(|p| paths.beside_config(p)).collect(),
        None => vec![base.to_path_buf(), data_dir.to_path_buf()],
    };
    Ok(Some(Policy {
        script: paths.beside_config(script),
        hook_timeout,
        memory_limit,
        max_idle_states: lua.max_idle_states.unwrap_or(8),
        vault_address: lua.vault_address,
        vault_token: lua.vault_token,
        allowed_paths,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::Config;

    fn allowed(text: &str) -> Vec<PathBuf> {
        let config = Config::parse(
            &format!("policy = \"policy.lua\"\ndata_dir = \"/var/lib/portcullis\"\n{text}"),
            Path::new("/etc/portcullis/portcullis.toml"),
            None,
        )
        .unwrap();
        config.policy.unwrap().allowed_paths
    }

    #[test]
    fn scripts_reach_files_only_under_the_allowed_paths() {
        assert_eq!(
            allowed(""),
            vec![
                PathBuf::from("/etc/portcullis"),
                PathBuf::from("/var/lib/portcullis")
            ],
            "default: the config's directory and the data directory"
        );
        assert_eq!(
            allowed("[lua]\nallowed_paths = [\"keys\", \"/srv/auth\"]\n"),
            vec![
                PathBuf::from("/etc/portcullis/keys"),
                PathBuf::from("/srv/auth")
            ]
        );
        assert!(allowed("[lua]\nallowed_paths = []\n").is_empty());
    }
}
