//! Opening the configured credential store.

use std::sync::Arc;

use anyhow::{Context, Result};
use portcullis_config::{Config, UserBackend};
use portcullis_credentials::file::FileStore;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::CredentialStore;

/// The store `serve` and `auth test` read from.
pub fn open(config: &Config) -> Result<Arc<dyn CredentialStore>> {
    Ok(match &config.users {
        UserBackend::Sqlite { path } => Arc::new(open_sqlite(path)?),
        UserBackend::File { path } => Arc::new(
            FileStore::load(path)
                .with_context(|| format!("loading users from {}", path.display()))?,
        ),
    })
}

/// The SQLite store, creating its directory on first use.
pub fn open_sqlite(path: &std::path::Path) -> Result<SqliteStore> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    SqliteStore::open(path).with_context(|| format!("opening {}", path.display()))
}
