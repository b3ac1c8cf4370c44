//! What an account allows once its secret is proven: whether it is
//! disabled, whether its own password may be used at all (or only app
//! passwords), whether that password is too old; and the app-password
//! path, whose scopes (networks, expiry) are checked the same way.
//!
//! Every rule here applies only after the proof was right, so a wrong
//! password to a disabled account is refused as any wrong password is
//! (`535`): the state is no oracle without the password. The refusals
//! are precise for the log and for the reply class ([`RefusalClass`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_credentials::app_password::{self, ScopeRefusal, Token};
use portcullis_credentials::{AppPassword, UserRecord, Verification};
use portcullis_sasl::Credentials;

use crate::{AppCredential, Authenticator, Decision, RejectReason};

/// The facts about a login the credentials do not carry.
#[derive(Debug, Clone, Default)]
pub struct LoginContext {
    /// The client's address (after PROXY and XCLIENT), for app-password
    /// network scopes. `None` (a local check): only unscoped ones pass.
    pub client: Option<IpAddr>,
}

/// How long a credential's "last used" may lag: a login writes it only
/// when it is older than this or the address changed, so a busy script
/// does not write at every login.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// The reply a refusal gets. Only a right proof reaches the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// `535 5.7.8`: invalid credentials (whatever the reason inside).
    Invalid,
    /// `525 5.7.13`: user account disabled (RFC 5248).
    AccountDisabled,
    /// `534 5.7.9`: mechanism too weak (here: the account password where
    /// app passwords are required).
    MechanismTooWeak,
}

impl RejectReason {
    /// The reply class the client gets for this refusal.
    pub fn class(&self) -> RefusalClass {
        match self {
            RejectReason::AccountDisabled => RefusalClass::AccountDisabled,
            RejectReason::AccountPasswordNotAllowed => RefusalClass::MechanismTooWeak,
            _ => RefusalClass::Invalid,
        }
    }
}

/// Whether the account, whose own secret was just proven with
/// `credentials`, may log in with it at `now` (Unix seconds).
pub(crate) fn account_password_allowed(
    record: &UserRecord,
    credentials: &Credentials,
    max_age: Option<Duration>,
    now: i64,
) -> Result<(), RejectReason> {
    if record.state.disabled {
        return Err(RejectReason::AccountDisabled);
    }
    // A client certificate is not the account password.
    if matches!(credentials, Credentials::External { .. }) {
        return Ok(());
    }
    if record.state.require_app_password {
        return Err(RejectReason::AccountPasswordNotAllowed);
    }
    let expired = max_age
        .zip(record.state.password_set_at)
        .is_some_and(|(age, set)| now.saturating_sub(set) >= secs(age));
    match expired {
        true => Err(RejectReason::PasswordExpired),
        false => Ok(()),
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, secs)
}

impl Authenticator {
    /// The app-password token in a password login, when this server
    /// checks app passwords: a key is set and the store keeps them.
    pub(crate) fn app_token(&self, credentials: &Credentials) -> Option<Token> {
        let Credentials::Password { password, .. } = credentials else {
            return None;
        };
        self.app_key.as_ref()?;
        self.store.app_passwords()?;
        app_password::parse(password.expose())
    }

    /// Decides on a login with an app password: one look-up by id, one
    /// HMAC; then the owner, the scopes and the account's state. Refusals
    /// before the proof is right are `WrongPassword`-like (535).
    pub(crate) fn check_app_password(
        &self,
        token: &Token,
        credentials: &Credentials,
        context: &LoginContext,
    ) -> Decision {
        let (Some(key), Some(apps)) = (&self.app_key, self.store.app_passwords()) else {
            return Decision::Rejected(RejectReason::WrongPassword);
        };
        let stored = match apps.app_password(&token.id) {
            Ok(Some(stored)) => stored,
            Ok(None) => return Decision::Rejected(RejectReason::UnknownAppPassword),
            Err(error) => return Decision::Unavailable(error.to_string()),
        };
        if token.verify(key, &stored.hash) == Verification::Mismatch {
            return Decision::Rejected(RejectReason::WrongPassword);
        }
        if stored.user != credentials.authcid() {
            return Decision::Rejected(RejectReason::AppPasswordOfAnotherUser);
        }
        let now = now_unix();
        if let Err(refusal) = stored.admits(context.client, now) {
            return Decision::Rejected(match refusal {
                ScopeRefusal::Expired => RejectReason::AppPasswordExpired,
                ScopeRefusal::NetworkNotAllowed => RejectReason::NetworkNotAllowed,
            });
        }
        let record = match self.lookup_record(credentials.authcid()) {
            Ok(Some(record)) => record,
            Ok(None) => return Decision::Rejected(RejectReason::UnknownUser),
            Err(error) => return Decision::Unavailable(error.to_string()),
        };
        if record.state.disabled {
            return Decision::Rejected(RejectReason::AccountDisabled);
        }
        self.note_use(&stored, context, now);
        match crate::authorize(Some(&record), credentials) {
            Ok(authz_id) => Decision::Accepted {
                authn_id: credentials.authcid().to_string(),
                authz_id,
                credential: Some(Arc::new(AppCredential {
                    id: stored.id,
                    label: stored.label,
                    senders: stored.senders,
                })),
            },
            Err(reason) => Decision::Rejected(reason),
        }
    }

    /// Records when and whence a credential was used, at most once per
    /// [`LAST_USED_GRANULARITY`] per address. A failure is logged only:
    /// the login itself was right.
    fn note_use(&self, stored: &AppPassword, context: &LoginContext, now: i64) {
        let from = context.client.map(|ip| ip.to_string()).unwrap_or_default();
        let fresh = stored
            .last_used_at
            .is_some_and(|at| now.saturating_sub(at) < secs(LAST_USED_GRANULARITY));
        if fresh && stored.last_used_from.as_deref() == Some(from.as_str()) {
            return;
        }
        let Some(apps) = self.store.app_passwords() else {
            return;
        };
        if let Err(error) = apps.app_password_used(&stored.id, now, &from) {
            tracing::warn!(credential = %stored.id, %error, "could not record app password use");
        }
    }
}
