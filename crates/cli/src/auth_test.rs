//! `portcullis auth test`: checks a credential against the configured store
//! from the command line and says why it failed, as `doveadm auth test` does.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use portcullis_auth::{AuthOptions, Authenticator, Decision};
use portcullis_config::Config;
use portcullis_credentials::{app_password, CramMd5Keys};
use portcullis_sasl::{Credentials, Mechanism, Secret};

#[derive(Subcommand)]
pub enum AuthAction {
    /// Check USER's password through a mechanism.
    Test {
        /// The login name to check.
        user: String,
        /// PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256 (played as a
        /// full exchange against the store's SCRAM secrets), or XOAUTH2 /
        /// OAUTHBEARER (the password is the bearer token; needs `[oauth]`
        /// in the config).
        #[arg(long, default_value = "PLAIN")]
        mechanism: String,
        /// Authorization identity to ask for (PLAIN and SCRAM).
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
    let user = crate::users::canonical_name(config, &user, false)?;
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
        Secret::from(crate::users::prompt("Password: ", "use --password-stdin")?)
    };
    let options = AuthOptions {
        password_max_age: config.auth.password_max_age,
        ..AuthOptions::default()
    };
    let mut authenticator = Authenticator::with_options(crate::stores::open(config)?, &options);
    // Only a key the server made: a test creates nothing.
    let key_file = config.data_dir.join(app_password::KEY_FILE);
    if key_file.exists() {
        let key = app_password::load_or_create_key(&config.data_dir)
            .with_context(|| format!("reading {}", key_file.display()))?;
        authenticator = authenticator.with_app_password_key(key);
    }
    if let Some(oauth) = &config.oauth {
        authenticator =
            authenticator.with_token_validator(portcullis_server::token_validator(oauth)?);
    }
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
        Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
            scram_exchange(&authenticator, mechanism, &user, authzid, &password)?
        }
        // The "password" is the bearer token.
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => Credentials::Bearer {
            user: Some(user.clone()),
            token: password,
        },
        Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus => {
            bail!("{mechanism} needs a TLS channel: test {mechanism} without -PLUS")
        }
        Mechanism::External => {
            bail!("EXTERNAL needs a TLS client certificate: try it with a client")
        }
    };
    Ok(match authenticator.check(&credentials) {
        Decision::Accepted {
            authn_id,
            authz_id,
            credential,
        } => match suspended(config, &authn_id)? {
            Some(s) => {
                println!("passdb: {user} auth failed ({mechanism}): password right, but the identity is suspended: {}", s.reason);
                ExitCode::from(1)
            }
            None => {
                let with = credential
                    .map(|c| format!(" credential={} label={:?}", c.id, c.label))
                    .unwrap_or_default();
                println!("passdb: {user} auth succeeded ({mechanism}): authn_id={authn_id} authz_id={authz_id}{with}");
                ExitCode::SUCCESS
            }
        },
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

/// The store's suspension of `user`, if any (the server answers `535`).
fn suspended(
    config: &Config,
    user: &str,
) -> Result<Option<portcullis_credentials::activity::Suspension>> {
    let Some(store) = crate::stores::open_activity(config)? else {
        return Ok(None);
    };
    Ok(store
        .suspensions()?
        .into_iter()
        .find(|(u, _)| u == user)
        .map(|(_, s)| s))
}

/// Plays a SCRAM client against the server side of the exchange, with the
/// secrets the store holds, and returns what the exchange concluded.
fn scram_exchange(
    authenticator: &Authenticator,
    mechanism: Mechanism,
    user: &str,
    authzid: Option<String>,
    password: &Secret,
) -> Result<Credentials> {
    use portcullis_sasl::framing::{decode_initial_response as decode, encode_challenge as encode};
    use portcullis_sasl::{scram, Exchange, Step};

    let Some((hash, _)) = mechanism.scram() else {
        bail!("{mechanism} is not SCRAM");
    };
    let escape = |name: &str| name.replace('=', "=3D").replace(',', "=2C");
    let gs2 = match &authzid {
        Some(z) => format!("n,a={},", escape(z)),
        None => "n,,".to_string(),
    };
    let first_bare = format!("n={},r={:032x}", escape(user), rand::random::<u128>());
    let first = format!("{gs2}{first_bare}").into_bytes();
    let Step::NeedSecrets(request) = Exchange::start(mechanism, Some(first), "")? else {
        bail!("the exchange did not ask for SCRAM secrets");
    };
    let secrets = authenticator.scram_secrets(request.authcid(), hash)?;
    let nonce = format!("{:032x}", rand::random::<u128>());
    let Step::Challenge(exchange, server_first) = request.resume(secrets, &nonce)? else {
        bail!("no server-first message");
    };
    let server_first = String::from_utf8(server_first)?;
    let field = |name: &str| {
        server_first
            .split(',')
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_string)
            .context("malformed server-first message")
    };
    let (full_nonce, salt, iterations) = (field("r=")?, field("s=")?, field("i=")?);
    let without_proof = format!("c={},r={full_nonce}", encode(gs2.as_bytes()));
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let prepared = scram::saslprep(std::str::from_utf8(password.expose())?)?;
    let (proof, _) = scram::client_proof(
        hash,
        prepared.as_bytes(),
        &decode(salt.as_bytes())?,
        iterations.parse()?,
        auth_message.as_bytes(),
    );
    let last = format!("{without_proof},p={}", encode(&proof));
    match exchange.respond(last.into_bytes())? {
        Step::Done(credentials) => Ok(credentials),
        _ => bail!("the exchange did not finish"),
    }
}
