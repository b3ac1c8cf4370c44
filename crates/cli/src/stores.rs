//! Opening the configured credential store.

use std::sync::Arc;

use anyhow::{Context, Result};
use portcullis_config::{Config, LdapUsers, UserBackend};
use portcullis_credentials::file::FileStore;
use portcullis_credentials::ldap::{LdapAttributes, LdapMode, LdapSettings, LdapStore};
use portcullis_credentials::postgres::PostgresStore;
use portcullis_credentials::sqlite::SqliteStore;
use portcullis_credentials::{CredentialStore, UserAdmin};

/// The store `serve` and `auth test` read from.
pub fn open(config: &Config) -> Result<Arc<dyn CredentialStore>> {
    Ok(match &config.users {
        UserBackend::Sqlite { path } => Arc::new(open_sqlite(path)?),
        UserBackend::File { path } => Arc::new(
            FileStore::load(path)
                .with_context(|| format!("loading users from {}", path.display()))?,
        ),
        UserBackend::Postgres {
            url,
            password_query,
        } => Arc::new(open_postgres(url, password_query.as_deref())?),
        UserBackend::Ldap(ldap) => Arc::new(open_ldap(ldap, config.store_timeout)?),
    })
}

/// The LDAP store; binds once to fail early.
pub fn open_ldap(ldap: &LdapUsers, timeout: std::time::Duration) -> Result<LdapStore> {
    let bind_password = match &ldap.bind_password_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let line = text.lines().next().unwrap_or_default().to_string();
            Some(portcullis_credentials::Secret::from(line))
        }
    };
    let settings = LdapSettings {
        url: ldap.url.clone(),
        starttls: ldap.starttls,
        bind_dn: ldap.bind_dn.clone(),
        bind_password,
        base_dn: ldap.base_dn.clone(),
        user_filter: ldap.user_filter.clone(),
        name_attribute: ldap.name_attribute.clone(),
        mode: match &ldap.user_dn {
            Some(dn) => LdapMode::Bind { dn: dn.clone() },
            None => LdapMode::Search,
        },
        attributes: LdapAttributes::default(),
        timeout,
    };
    LdapStore::open(settings).with_context(|| format!("opening the LDAP user store {}", ldap.url))
}

/// The PostgreSQL store; connects once to fail early.
pub fn open_postgres(
    url: &portcullis_config::defence::DatabaseUrl,
    password_query: Option<&str>,
) -> Result<PostgresStore> {
    PostgresStore::open(&url.0, password_query)
        .with_context(|| format!("opening the PostgreSQL user store {url:?}"))
}

/// The store `portcullis user` changes: SQLite or our PostgreSQL table.
pub fn open_admin(config: &Config) -> Result<Box<dyn UserAdmin>> {
    Ok(match &config.users {
        UserBackend::Sqlite { path } => Box::new(open_sqlite(path)?),
        UserBackend::Postgres {
            url,
            password_query: None,
        } => Box::new(open_postgres(url, None)?),
        UserBackend::Postgres { .. } => {
            anyhow::bail!("users come from your own table (password_query): manage them there")
        }
        UserBackend::File { .. } => anyhow::bail!("the users backend is a file: edit it directly"),
        UserBackend::Ldap(_) => {
            anyhow::bail!("users come from the LDAP directory: manage them there")
        }
    })
}

/// The activity store, where there is one.
pub type Activity = Option<Arc<dyn portcullis_credentials::activity::ActivityStore>>;

/// The credential store and the activity store of `serve`. With SQLite
/// one store serves both: the history it writes (on the connection whose
/// `data_version` it reads, see `SqliteStore`) then does not look like a
/// change to the users. From a second store each history batch would be
/// another connection's commit, making every cached user record stale ten
/// times a second: measured, most logins of a many-user server went back
/// to the database.
pub fn open_with_activity(config: &Config) -> Result<(Arc<dyn CredentialStore>, Activity)> {
    if let UserBackend::Sqlite { path } = &config.users {
        let store = Arc::new(open_sqlite(path)?);
        return Ok((store.clone(), Some(store)));
    }
    Ok((open(config)?, open_activity(config)?))
}

/// Where the login history, suspensions and per-user sending limits live:
/// the user database (SQLite, or PostgreSQL with our own `users` table),
/// in tables of their own. `None` for other backends.
pub fn open_activity(config: &Config) -> Result<Activity> {
    Ok(match &config.users {
        UserBackend::Sqlite { path } => Some(Arc::new(open_sqlite(path)?)),
        UserBackend::Postgres {
            url,
            password_query: None,
        } => {
            let store = open_postgres(url, None)?;
            store
                .open_activity()
                .context("creating the activity tables in PostgreSQL")?;
            Some(Arc::new(store))
        }
        _ => None,
    })
}

/// The SQLite store, creating its directory on first use.
pub fn open_sqlite(path: &std::path::Path) -> Result<SqliteStore> {
    if let Some(dir) = path.parent() {
        portcullis_server::private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    SqliteStore::open(path).with_context(|| format!("opening {}", path.display()))
}
