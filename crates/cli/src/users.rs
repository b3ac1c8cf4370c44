//! `portcullis user add|passwd|del|list|allow`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use portcullis_config::Config;
use portcullis_sasl::Secret;
use rand::distributions::{Alphanumeric, DistString};

#[derive(Subcommand)]
pub enum UserAction {
    /// Create a user.
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Delete a user.
    Del { name: String },
    /// List user names.
    List,
    /// Set the authorization identities a user may act as (PLAIN authzid).
    Allow {
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
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        Ok((Secret::from(first), false))
    }
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

pub fn run(action: UserAction, config: &Config) -> Result<ExitCode> {
    let store = crate::stores::open_admin(config)?;
    match action {
        UserAction::Add { name, password } => {
            let (secret, generated) = password.read()?;
            store.add_user(&name, &secret, config.cram_md5)?;
            println!("added user {name}");
            if generated {
                println!("password: {}", String::from_utf8_lossy(secret.expose()));
            }
        }
        UserAction::Passwd { name, password } => {
            let (secret, generated) = password.read()?;
            store.set_password(&name, &secret, config.cram_md5)?;
            println!("password changed for {name}");
            if generated {
                println!("password: {}", String::from_utf8_lossy(secret.expose()));
            }
        }
        UserAction::Del { name } => {
            store.delete_user(&name)?;
            println!("deleted user {name}");
        }
        UserAction::List => {
            for name in store.list_users()? {
                println!("{name}");
            }
        }
        UserAction::Allow { name, identities } => {
            store.set_may_act_as(&name, &identities)?;
            println!("{name} may act as: {}", identities.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
