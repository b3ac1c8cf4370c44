//! `portcullis auth test`: checks a credential against the configured store
//! from the command line and says why it failed, as `doveadm auth test` does.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use portcullis_auth::{Authenticator, Decision};
use portcullis_config::Config;
use portcullis_credentials::CramMd5Keys;
use portcullis_sasl::{Credentials, Mechanism, Secret};

#[derive(Subcommand)]
pub enum AuthAction {
    /// Check USER's password through a mechanism.
    Test {
        user: String,
        /// PLAIN, LOGIN or CRAM-MD5.
        #[arg(long, default_value = "PLAIN")]
        mechanism: String,
        /// Authorization identity to ask for (PLAIN only).
        #[arg(long)]
        authzid: Option<String>,
        /// Read the password from standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
}

pub fn run(action: AuthAction, config: &Config) -> Result<ExitCode> {
    let AuthAction::Test {
        user,
        mechanism,
        authzid,
        password_stdin,
    } = action;
    let Some(mechanism) = Mechanism::from_name(&mechanism) else {
        bail!("unknown mechanism {mechanism}");
    };
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading standard input")?;
        Secret::from(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        Secret::from(rpassword::prompt_password("Password: ").context("reading the password")?)
    };
    let credentials = match mechanism {
        // Play the client: answer a challenge the way a client with this
        // password would, so the server side is checked as in a session.
        Mechanism::CramMd5 => {
            let challenge =
                format!("<{}.0@{}>", rand::random::<u64>(), config.hostname).into_bytes();
            let digest = CramMd5Keys::from_password(password.expose()).digest(&challenge);
            Credentials::CramMd5 {
                authcid: user.clone(),
                challenge,
                digest,
            }
        }
        Mechanism::Plain | Mechanism::Login => Credentials::Password {
            authcid: user.clone(),
            authzid,
            password,
        },
    };
    let authenticator = Authenticator::new(crate::stores::open(config)?);
    Ok(match authenticator.check(&credentials) {
        Decision::Accepted { authn_id, authz_id } => {
            println!("passdb: {user} auth succeeded ({mechanism}): authn_id={authn_id} authz_id={authz_id}");
            ExitCode::SUCCESS
        }
        Decision::Rejected(reason) => {
            println!("passdb: {user} auth failed ({mechanism}): {reason}");
            ExitCode::from(1)
        }
        Decision::Unavailable(reason) => {
            println!("passdb: {user} auth deferred ({mechanism}): store unavailable: {reason}");
            ExitCode::from(3)
        }
    })
}
