//! What can be wrong with a config, and what is only old-fashioned.
//!
//! A leaf: every section's validation returns [`ConfigError`] naming the
//! key, and records a [`Deprecation`] for a key written in an older form
//! that still works. Deprecations are not errors, so existing files keep
//! loading; `Config::load` hands them back (in `Config::deprecations`) for
//! the binary to log.

use std::path::PathBuf;

/// What is wrong with a config, naming the file or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong kind (an unknown
    /// choice, a duration that does not parse); the message shows the line.
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A key written under its old name, still honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The key as written (`limits.idle_timeout_secs`).
    pub old: &'static str,
    /// The key to write instead (`limits.idle_timeout`).
    pub new: &'static str,
    /// The value in the new form (`"5m"`).
    pub value: String,
}

impl std::fmt::Display for Deprecation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is deprecated; write {} = \"{}\" instead",
            self.old, self.new, self.value
        )
    }
}
