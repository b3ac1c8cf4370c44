//! `portcullis user add|passwd|del|list|allow|disable|enable|require-app-password`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use portcullis_config::Config;
use portcullis_credentials::AccountFlag;
use portcullis_sasl::Secret;
use rand::distributions::{Alphanumeric, DistString};

#[derive(Subcommand)]
pub enum UserAction {
    /// Create a user (and the data directory and user database, on first use).
    Add {
        /// The login name.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Create many users from FILE ("-": standard input), one
    /// `name:password` or `name<TAB>password` per line (blank lines and
    /// `#` comments skipped). Passwords are hashed on every core; users
    /// that exist already are left as they are and counted.
    Import {
        /// The list of users and passwords.
        file: std::path::PathBuf,
    },
    /// Change a user's password.
    Passwd {
        /// The login name.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Delete a user.
    Del {
        /// The login name.
        name: String,
    },
    /// List user names, with their state (disabled, app passwords only).
    List,
    /// Refuse the account's logins (`525 5.7.13` after a right password).
    Disable { name: String },
    /// Allow the account's logins again.
    Enable { name: String },
    /// Refuse the account password for SMTP (`534 5.7.9`): only app
    /// passwords log in. `--off` allows the account password again.
    RequireAppPassword {
        name: String,
        #[arg(long)]
        off: bool,
    },
    /// Last logins, messages sent per hour, signals, suspension and limits.
    Activity {
        /// The login name.
        name: String,
    },
    /// Refuse AUTH for the user (535 5.7.8); open sessions get 421.
    Suspend {
        /// The login name.
        name: String,
        /// Why, for the log and `auth test`.
        #[arg(long, default_value = "suspended by the operator")]
        reason: String,
    },
    /// Lift a suspension.
    Resume {
        /// The login name.
        name: String,
    },
    /// Sending limits of this user, replacing the config's defaults for
    /// what they name: `--messages 500/h --recipients 2000/d`.
    Limits {
        /// The login name.
        name: String,
        /// Messages per window, e.g. 500/h (repeat for several windows).
        #[arg(long)]
        messages: Vec<String>,
        /// Recipients per window, e.g. 2000/d.
        #[arg(long)]
        recipients: Vec<String>,
        /// Bytes per window, e.g. 500M/d.
        #[arg(long)]
        bytes: Vec<String>,
        /// Remove the user's own limits (the defaults apply again).
        #[arg(long)]
        clear: bool,
    },
    /// Set the authorization identities a user may act as (PLAIN authzid).
    Allow {
        /// The login name.
        name: String,
        /// Identities; none clears the list; `*` allows any.
        identities: Vec<String>,
    },
}

/// Where a new password comes from. Never from argv: it would show in `ps`
/// and shell history.
#[derive(Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "generate")]
    password_stdin: bool,
    /// Generate a random password and print it once.
    #[arg(long)]
    generate: bool,
}

impl PasswordSource {
    fn read(&self) -> Result<(Secret, bool)> {
        if self.generate {
            return Ok((
                Secret::from(Alphanumeric.sample_string(&mut rand::thread_rng(), 20)),
                true,
            ));
        }
        if self.password_stdin {
            return Ok((read_stdin_line()?, false));
        }
        let first = prompt("Password: ", "use --password-stdin or --generate")?;
        let again = prompt("Again: ", "use --password-stdin or --generate")?;
        if first != again {
            bail!("the passwords differ");
        }
        Ok((Secret::from(first), false))
    }
}

/// The `(name, password)` lines of an import file, names canonical.
fn read_import(file: &std::path::Path, config: &Config) -> Result<Vec<(String, Secret)>> {
    let text = match file.as_os_str() == "-" {
        true => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
        false => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut users: Vec<(String, Secret)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, password)) = line.split_once(['\t', ':']) else {
            bail!("{} line {}: not name:password", file.display(), number + 1);
        };
        if password.is_empty() {
            bail!("{} line {}: empty password", file.display(), number + 1);
        }
        let name = canonical_name(config, name, true)
            .with_context(|| format!("{} line {}", file.display(), number + 1))?;
        // Two lines for one user would race (hashed at once, either stored).
        if let Some(first) = seen.insert(name.clone(), number + 1) {
            bail!(
                "{} line {}: {name} again (first on line {first})",
                file.display(),
                number + 1
            );
        }
        users.push((name, Secret::from(password.to_string())));
    }
    Ok(users)
}

/// Adds `users`, hashing on every core; `(added, existed)`. The first
/// other error stops the import (users added before it stay).
fn import(
    store: &dyn portcullis_credentials::UserAdmin,
    users: &[(String, Secret)],
    with_cram_md5: bool,
) -> Result<(usize, usize)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (next, added, existed) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, password)) = users.get(at) else {
                    return;
                };
                if failed.lock().map_or(true, |f| f.is_some()) {
                    return;
                }
                match store.add_user(name, password, with_cram_md5) {
                    Ok(()) => added.fetch_add(1, Ordering::Relaxed),
                    Err(portcullis_credentials::StoreError::UserExists(_)) => {
                        existed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(error) => {
                        if let Ok(mut first) = failed.lock() {
                            first.get_or_insert(
                                anyhow::Error::new(error).context(format!("adding {name}")),
                            );
                        }
                        return;
                    }
                };
            });
        }
    });
    if let Some(error) = failed.into_inner().ok().flatten() {
        return Err(error);
    }
    Ok((added.into_inner(), existed.into_inner()))
}

/// Asks for a password on the terminal. Without one (a pipe, a service
/// manager, CI) rpassword fails with a bare OS error; say what to do instead.
pub fn prompt(text: &str, otherwise: &str) -> Result<String> {
    rpassword::prompt_password(text).map_err(|error| {
        let no_terminal = matches!(error.raw_os_error(), Some(libc::ENXIO | libc::ENOTTY))
            || error.kind() == std::io::ErrorKind::NotFound;
        if no_terminal {
            anyhow::anyhow!("no terminal to ask for the password: {otherwise}")
        } else {
            anyhow::Error::new(error).context("reading the password")
        }
    })
}

fn read_stdin_line() -> Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    Ok(Secret::from(password))
}

/// `name` as the server will see it (`[users] username_profile`): a new
/// user must satisfy the profile; others are looked up as logins are.
pub fn canonical_name(config: &Config, name: &str, new: bool) -> Result<String> {
    let profile = config.username_profile;
    match profile.enforce(name) {
        Ok(canonical) => Ok(canonical.into_owned()),
        Err(_) if !new => Ok(name.to_owned()),
        Err(error) => bail!(
            "{name:?}: {error} (no spaces or control characters; or set \
             [users] username_profile = \"exact\")"
        ),
    }
}

impl UserAction {
    /// The action with its user name in canonical form.
    fn canonical(self, config: &Config) -> Result<UserAction> {
        let name = |n: String, new| canonical_name(config, &n, new);
        Ok(match self {
            UserAction::Add { name: n, password } => UserAction::Add {
                name: name(n, true)?,
                password,
            },
            UserAction::Passwd { name: n, password } => UserAction::Passwd {
                name: name(n, false)?,
                password,
            },
            UserAction::Del { name: n } => UserAction::Del {
                name: name(n, false)?,
            },
            UserAction::List => UserAction::List,
            UserAction::Import { file } => UserAction::Import { file },
            UserAction::Allow {
                name: n,
                identities,
            } => UserAction::Allow {
                name: name(n, false)?,
                identities,
            },
            UserAction::Disable { name: n } => UserAction::Disable {
                name: name(n, false)?,
            },
            UserAction::Enable { name: n } => UserAction::Enable {
                name: name(n, false)?,
            },
            UserAction::RequireAppPassword { name: n, off } => UserAction::RequireAppPassword {
                name: name(n, false)?,
                off,
            },
            UserAction::Activity { name: n } => UserAction::Activity {
                name: name(n, false)?,
            },
            UserAction::Suspend { name: n, reason } => UserAction::Suspend {
                name: name(n, false)?,
                reason,
            },
            UserAction::Resume { name: n } => UserAction::Resume {
                name: name(n, false)?,
            },
            UserAction::Limits {
                name: n,
                messages,
                recipients,
                bytes,
                clear,
            } => UserAction::Limits {
                name: name(n, false)?,
                messages,
                recipients,
                bytes,
                clear,
            },
        })
    }

    /// Only `user add` may make a data directory; the others read one.
    pub fn may_create_data_dir(&self) -> bool {
        matches!(self, UserAction::Add { .. } | UserAction::Import { .. })
    }
}

pub fn run(action: UserAction, config: &Config) -> Result<ExitCode> {
    // The password first: a prompt that fails must leave nothing behind.
    let new_password = match &action {
        UserAction::Add { password, .. } | UserAction::Passwd { password, .. } => {
            Some(password.read()?)
        }
        _ => None,
    };
    // One spelling of the name for every command, activity's included.
    let action = action.canonical(config)?;
    if let Some(code) = crate::activity::run(&action, config)? {
        return Ok(code);
    }
    let store = crate::stores::open_admin(config)?;
    match action {
        UserAction::Add { name, .. } => {
            let (secret, generated) = new_password.context("password read above")?;
            store.add_user(&name, &secret, config.cram_md5)?;
            println!("added user {name}");
            if generated {
                println!("password: {}", String::from_utf8_lossy(secret.expose()));
            }
        }
        UserAction::Passwd { name, .. } => {
            let (secret, generated) = new_password.context("password read above")?;
            store.set_password(&name, &secret, config.cram_md5)?;
            println!("password changed for {name}");
            if generated {
                println!("password: {}", String::from_utf8_lossy(secret.expose()));
            }
        }
        UserAction::Import { file } => {
            let users = read_import(&file, config)?;
            let (added, existing) = import(store.as_ref(), &users, config.cram_md5)?;
            println!("added {added} user(s); {existing} existed already and were left as they are");
        }
        UserAction::Del { name } => {
            store.delete_user(&name)?;
            println!("deleted user {name}");
        }
        UserAction::List => {
            for name in store.list_users()? {
                let state = store.lookup(&name)?.map(|r| r.state).unwrap_or_default();
                let mut flags = Vec::new();
                if state.disabled {
                    flags.push("disabled");
                }
                if state.require_app_password {
                    flags.push("app-passwords-only");
                }
                match flags.is_empty() {
                    true => println!("{name}"),
                    false => println!("{name}  ({})", flags.join(", ")),
                }
            }
        }
        UserAction::Disable { name } => {
            store.set_flag(&name, AccountFlag::Disabled, true)?;
            println!("disabled {name}");
        }
        UserAction::Enable { name } => {
            store.set_flag(&name, AccountFlag::Disabled, false)?;
            println!("enabled {name}");
        }
        UserAction::RequireAppPassword { name, off } => {
            store.set_flag(&name, AccountFlag::RequireAppPassword, !off)?;
            match off {
                false => println!("{name}: app passwords only (the account password is refused)"),
                true => println!("{name}: the account password is allowed again"),
            }
        }
        UserAction::Allow { name, identities } => {
            store.set_may_act_as(&name, &identities)?;
            println!("{name} may act as: {}", identities.join(", "));
        }
        UserAction::Activity { .. }
        | UserAction::Suspend { .. }
        | UserAction::Resume { .. }
        | UserAction::Limits { .. } => unreachable!("handled by activity::run"),
    }
    Ok(ExitCode::SUCCESS)
}
