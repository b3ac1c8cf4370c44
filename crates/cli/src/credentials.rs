//! `portcullis credential add|list|revoke|rotate`: app passwords.
//!
//! A new (or rotated) token is printed once and never stored: the store
//! keeps an HMAC of it under the key in the data directory (see
//! `portcullis_credentials::app_password`).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use portcullis_config::Config;
use portcullis_credentials::{app_password, AppPassword, NewAppPassword};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum CredentialAction {
    /// Make an app password for USER and print it once.
    Add {
        /// The account it logs in as.
        user: String,
        /// What it is for ("phone", "backup script").
        #[arg(long)]
        label: String,
        /// Valid for this long (`90d`, `12h`); without it, until revoked.
        #[arg(long)]
        expires: Option<String>,
        /// Client networks it may log in from (CIDR or address, comma-separated).
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
        /// Envelope senders it may use (addresses or `@domain`,
        /// comma-separated), on top of the account's sender rules.
        #[arg(long, value_delimiter = ',')]
        senders: Vec<String>,
    },
    /// List USER's app passwords (never the secrets).
    List { user: String },
    /// Delete one: logins with it fail from now on.
    Revoke { user: String, id: String },
    /// A new secret for the same id and scopes; the old one stops working.
    Rotate { user: String, id: String },
}

pub fn run(action: CredentialAction, config: &Config) -> Result<ExitCode> {
    let store = crate::stores::open_admin(config)?;
    let apps = store.app_password_admin();
    let name = |user: &str| crate::users::canonical_name(config, user, false);
    match action {
        CredentialAction::Add {
            user,
            label,
            expires,
            from,
            senders,
        } => {
            let new = NewAppPassword {
                label,
                expires_at: expires.as_deref().map(expiry).transpose()?,
                networks: from.iter().map(|n| network(n)).collect::<Result<_>>()?,
                senders,
            };
            let user = name(&user)?;
            let key = key(config)?;
            let (whole, token) = app_password::generate();
            apps.add_app_password(&user, &token.id, &token.hash(&key), &new)?;
            println!("added app password {} ({}) for {user}", token.id, new.label);
            println!("{}", String::from_utf8_lossy(whole.expose()));
        }
        CredentialAction::List { user } => {
            let user = name(&user)?;
            if store.lookup(&user)?.is_none() {
                bail!("no such user {user:?}");
            }
            for credential in apps.list_app_passwords(&user)? {
                println!("{}", describe(&credential));
            }
        }
        CredentialAction::Revoke { user, id } => {
            let user = name(&user)?;
            apps.revoke_app_password(&user, &id)?;
            println!("revoked app password {id} of {user}");
        }
        CredentialAction::Rotate { user, id } => {
            let user = name(&user)?;
            let key = key(config)?;
            let (whole, token) = app_password::generate_for(&id);
            apps.rotate_app_password(&user, &id, &token.hash(&key))?;
            println!("rotated app password {id} of {user}");
            println!("{}", String::from_utf8_lossy(whole.expose()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key(config: &Config) -> Result<portcullis_credentials::Secret> {
    app_password::load_or_create_key(&config.data_dir).with_context(|| {
        format!(
            "app password key in {}",
            config.data_dir.join(app_password::KEY_FILE).display()
        )
    })
}

/// `90d` from now, in Unix seconds.
fn expiry(text: &str) -> Result<i64> {
    let valid =
        portcullis_config::duration::parse(text).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Ok(now.saturating_add(i64::try_from(valid.as_secs()).unwrap_or(i64::MAX)))
}

/// A CIDR network, or one address as its own network.
fn network(text: &str) -> Result<ipnet::IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ipnet::IpNet::from(ip)),
        Err(_) => bail!("--from {text:?}: not a network like 198.51.100.0/24"),
    }
}

/// One line: id, label, created, expires, last used (time, address), scopes.
fn describe(c: &AppPassword) -> String {
    let at = |t: Option<i64>, none: &str| {
        t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| none.to_string())
    };
    let last_used = match (&c.last_used_at, &c.last_used_from) {
        (Some(t), Some(from)) if !from.is_empty() => format!("{} from {from}", at(Some(*t), "")),
        (Some(t), _) => at(Some(*t), ""),
        _ => "never".into(),
    };
    let list = |items: Vec<String>| match items.is_empty() {
        true => "any".to_string(),
        false => items.join(","),
    };
    format!(
        "{id}  label={label:?}  created={created}  expires={expires}  last_used={last_used}  from={from}  senders={senders}",
        id = c.id,
        label = c.label,
        created = at(Some(c.created_at), "?"),
        expires = at(c.expires_at, "never"),
        from = list(c.networks.iter().map(ToString::to_string).collect()),
        senders = list(c.senders.clone()),
    )
}
