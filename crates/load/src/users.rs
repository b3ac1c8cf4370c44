//! The identities sessions log in as: one user (`-u`), a file of users
//! (`--users FILE`), or numbered users (`--user-pattern 'u{n}'
//! --user-count N`).
//!
//! Why several users: a server caches a verified password, so one user
//! logging in again and again measures the cache, not the slow hash. A
//! burst of first logins after a restart (every user cold at once) needs
//! many distinct users, as many as there are connections.
//!
//! Sessions take the users round-robin, in the order given (file order, or
//! `{n}` = 1, 2, ... N): the k-th session started in the run, counting
//! across all connections, logs in as user k mod N. With `--sessions N` and
//! N users, every user logs in exactly once.

use std::path::Path;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::mech::Password;

/// A user file larger than this is refused (a load tool reads it whole).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The placeholder replaced by the user's number in the patterns.
const NUMBER: &str = "{n}";

/// One identity: login name and password (or token).
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: Password,
}

/// Reads `user:password` or `user<TAB>password` lines (split at the first
/// TAB if the line has one, else at the first `:`, so a password may hold
/// colons). Blank lines and lines starting with `#` are skipped; a
/// trailing CR is dropped.
pub fn from_file(path: &Path) -> anyhow::Result<Vec<User>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("--users {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "--users {}: larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES >> 20
        );
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("--users {}", path.display()))?,
    );
    parse(&text).with_context(|| format!("--users {}", path.display()))
}

/// The lines of a user file (see [`from_file`]).
pub fn parse(text: &str) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let split = if line.contains('\t') { '\t' } else { ':' };
        let Some((name, password)) = line.split_once(split) else {
            bail!(
                "line {}: expected user:password or user<TAB>password",
                index + 1
            );
        };
        if name.is_empty() {
            bail!("line {}: empty user name", index + 1);
        }
        users.push(User {
            name: name.to_string(),
            password: Password::new(password.to_string()),
        });
    }
    if users.is_empty() {
        bail!("no users");
    }
    Ok(users)
}

/// Users `pattern` with `{n}` = 1..=count; each password is
/// `password_pattern` with the same number, or `password` for all.
pub fn numbered(
    pattern: &str,
    count: usize,
    password_pattern: Option<&str>,
    password: Option<&Password>,
) -> anyhow::Result<Vec<User>> {
    if !pattern.contains(NUMBER) {
        bail!("--user-pattern {pattern:?} has no {NUMBER}");
    }
    if count == 0 {
        bail!("--user-count must be at least 1");
    }
    Ok((1..=count)
        .map(|n| {
            let n = n.to_string();
            let password = match (password_pattern, password) {
                (Some(p), _) => Password::new(p.replace(NUMBER, &n)),
                (None, Some(p)) => p.clone(),
                (None, None) => Password::new(String::new()),
            };
            User {
                name: pattern.replace(NUMBER, &n),
                password,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(users: &[User]) -> Vec<(&str, &str)> {
        users
            .iter()
            .map(|u| (u.name.as_str(), u.password.expose()))
            .collect()
    }

    #[test]
    fn a_user_file_splits_at_a_tab_else_at_the_first_colon() {
        let users = parse("# users\nalice:pw:with:colons\r\n\nbob@x.test\tp:w\n").unwrap();
        assert_eq!(
            pairs(&users),
            [("alice", "pw:with:colons"), ("bob@x.test", "p:w")]
        );
    }

    #[test]
    fn a_user_file_without_separator_or_users_is_refused() {
        let err = parse("alice:pw\nbob\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse("# nothing\n\n").is_err());
        assert!(parse(":pw\n").is_err());
    }

    #[test]
    fn numbered_users_count_from_one() {
        let users = numbered("u{n}@x.test", 3, Some("pw-{n}"), None).unwrap();
        assert_eq!(
            pairs(&users),
            [
                ("u1@x.test", "pw-1"),
                ("u2@x.test", "pw-2"),
                ("u3@x.test", "pw-3")
            ]
        );
        let same = Password::new("s".into());
        let users = numbered("u{n}", 2, None, Some(&same)).unwrap();
        assert_eq!(pairs(&users), [("u1", "s"), ("u2", "s")]);
        assert!(numbered("user", 2, None, Some(&same)).is_err());
        assert!(numbered("u{n}", 0, None, Some(&same)).is_err());
    }
}
