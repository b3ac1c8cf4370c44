//! How validated settings are shown to an operator (`check-config`, the
//! log): in the words of the config file (`starttls`, `required`,
//! `sqlite …`), never as Rust debug forms. A database URL is shown without
//! its password.

use std::fmt;

use crate::{ListenerAuth, ListenerTls, UserBackend};

impl fmt::Display for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerTls::StartTls => "starttls",
            ListenerTls::Implicit => "implicit",
            ListenerTls::None => "none",
        })
    }
}

impl fmt::Display for ListenerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerAuth::Required => "required",
            ListenerAuth::Disabled => "disabled",
            ListenerAuth::Optional => "optional",
        })
    }
}

impl fmt::Display for UserBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserBackend::Sqlite { path } => write!(f, "sqlite {}", path.display()),
            UserBackend::File { path } => write!(f, "file {}", path.display()),
            UserBackend::Postgres {
                url,
                password_query,
            } => {
                // The Debug form of the URL is the redacted one.
                let url = format!("{url:?}");
                write!(f, "postgres {}", url.trim_matches('"'))?;
                if password_query.is_some() {
                    f.write_str(" (password_query)")?;
                }
                Ok(())
            }
            UserBackend::Ldap(ldap) => {
                let mode = match ldap.user_dn {
                    Some(_) => "bind",
                    None => "search",
                };
                write!(f, "ldap {} {} ({mode})", ldap.url, ldap.base_dn)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defence::DatabaseUrl;

    #[test]
    fn settings_show_as_the_config_file_writes_them() {
        assert_eq!(ListenerTls::StartTls.to_string(), "starttls");
        assert_eq!(ListenerAuth::Required.to_string(), "required");
        assert_eq!(ListenerAuth::Optional.to_string(), "optional");
        let sqlite = UserBackend::Sqlite {
            path: "data/users.sqlite".into(),
        };
        assert_eq!(sqlite.to_string(), "sqlite data/users.sqlite");
        let postgres = UserBackend::Postgres {
            url: DatabaseUrl("postgres://mail:secret@db/mail".into()),
            password_query: None,
        };
        let shown = postgres.to_string();
        assert!(shown.starts_with("postgres postgres://mail:"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
