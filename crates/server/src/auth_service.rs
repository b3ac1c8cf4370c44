//! The auth service: the one place that decides every claim of an
//! identity, whichever front end heard it.
//!
//! A claim is a SASL exchange a front end completed (its credentials), a
//! round of a mechanism the policy script implements, or a login a trusted
//! proxy vouched for (`XCLIENT LOGIN=`). [`AuthService::authenticate`]
//! takes it with the connection's facts and answers one [`Verdict`]. In
//! between, always in this order:
//!
//! ```text
//! admission    ban (421, close), user cooling down or the attempts in
//!              flight at a threshold (454, unchecked)      defence.rs
//! decide       the Lua policy, when it owns the mechanism  policy.rs
//! verify       the store: verified cache, else the check on
//!              the blocking pool (store timeout, hash slots) verify.rs
//! review       the Lua policy on a verified identity       policy.rs
//! record       success remembered; failure counted, delayed,
//!              maybe a ban (421, close); metrics and the audit line
//!                                                          defence.rs
//! identity     who, with the policy's user data, and the senders
//!              they may use (`[senders]`)                  authorization.rs
//! ```
//!
//! The service knows nothing of SMTP sessions: a front end builds an
//! [`AuthRequest`] from what its protocol said (the SMTP session in
//! `connection.rs` today; a Dovecot-auth-protocol listener, for Postfix's
//! `smtpd_sasl_type = dovecot`, next) and turns the [`Verdict`] into its
//! protocol's answer. Such a front end runs the SASL exchange itself
//! (`portcullis_sasl::Exchange`), asks [`AuthService::scram_secrets`] when
//! the exchange needs them, and hands in the credentials the exchange
//! produced; it keeps one [`Exchange`] per exchange in progress, for the
//! admission of script mechanisms, which spans their rounds.

use std::sync::Arc;

use portcullis_auth::Authenticator;
use portcullis_config::authorization::SenderPolicy;
use portcullis_limits::AttemptSlot;
use portcullis_lua::{ConnMeta, Policy};
use portcullis_proto::Reply;
use portcullis_sasl::{Credentials, Mechanism, ScramHash, Secret};
use portcullis_session::{CredentialTag, SenderRule};

use crate::containment::Containment;
use crate::defence::Defence;
use crate::outcome::Outcome;
use crate::peer::ConnectionFacts;
use crate::policy::ScriptRound;
use crate::store_calls::StoreCalls;
use crate::verify::ScramFound;

/// One claim of an identity, with what is known of the client.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub claim: Claim,
    /// The client, its listener and TLS session.
    pub facts: &'a ConnectionFacts,
    /// What the policy's hooks share for this connection (user data
    /// included): one per client connection.
    pub meta: &'a ConnMeta,
}

/// How the client claims an identity.
#[derive(Debug)]
pub enum Claim {
    /// A completed SASL exchange: the credentials (or proof) it carried.
    Sasl {
        mechanism: Mechanism,
        credentials: Credentials,
    },
    /// Round `step` (1 for the first) of a mechanism the policy script
    /// implements, with the client's decoded answer.
    ScriptRound {
        mechanism: String,
        step: u32,
        response: Option<Secret>,
    },
    /// A trusted proxy vouches that the client logged in as `login`.
    ProxyLogin { login: String },
}

/// The service's answer.
#[derive(Debug)]
pub enum Verdict {
    /// The client is `authn_id`, acting as `authz_id`.
    Accept {
        authn_id: String,
        authz_id: String,
        /// What the policy attached. The SMTP front end reads it from the
        /// connection's `ConnMeta` when it spools (where the policy's
        /// hooks also see it); a front end without messages returns it.
        #[allow(dead_code)]
        user_data: Option<serde_json::Value>,
        /// The senders the user may use; `None` when `[senders]` is off.
        sender_rule: Option<SenderRule>,
        /// The app password used, if any: its id is what per-credential
        /// limits and the spool key on; its senders narrow the rule.
        credential: Option<CredentialTag>,
    },
    /// Refused: send `reply`; close the connection after it if `close`
    /// (a ban, or the policy asked).
    ///
    /// For OAUTHBEARER and XOAUTH2, `oauth_challenge` is the error JSON a
    /// policy chose for the challenge before the reply (else the default).
    Reject {
        reply: Reply,
        close: bool,
        oauth_challenge: Option<Vec<u8>>,
    },
    /// Not decided now (store or policy unavailable, cool-down): send
    /// `reply`; the client may try again later.
    Defer { reply: Reply },
    /// A script mechanism's exchange goes on: send `challenge` and make
    /// the client's answer the next [`Claim::ScriptRound`].
    Challenge(Vec<u8>),
}

/// What one exchange in progress holds between its rounds: the admission
/// of a script mechanism is made before its first round and held until its
/// outcome is counted. A front end keeps one per connection (or per
/// exchange) and passes it to every [`AuthService::authenticate`].
#[derive(Debug, Default)]
pub struct Exchange {
    slot: Option<AttemptSlot>,
}

/// Everything a decision needs, shared by all connections.
pub struct AuthService {
    authenticator: Authenticator,
    store_calls: StoreCalls,
    defence: Defence,
    policy: Option<Arc<Policy>>,
    senders: Option<SenderPolicy>,
    /// Suspensions, the login history and the signals (record step).
    containment: Arc<Containment>,
}

impl AuthService {
    pub(crate) fn new(
        authenticator: Authenticator,
        store_calls: StoreCalls,
        defence: Defence,
        senders: Option<SenderPolicy>,
        containment: Arc<Containment>,
    ) -> AuthService {
        AuthService {
            authenticator,
            store_calls,
            defence,
            policy: None,
            senders,
            containment,
        }
    }

    /// Replaces the containment (one with the activity store).
    pub(crate) fn set_containment(&mut self, containment: Arc<Containment>) {
        self.containment = containment;
    }

    /// The bound on store calls, for other store calls of a session.
    pub(crate) fn store_calls(&self) -> &StoreCalls {
        &self.store_calls
    }

    /// Lets `policy` decide and review from now on.
    pub(crate) fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = Some(policy);
    }

    pub(crate) fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub(crate) fn defence(&self) -> &Defence {
        &self.defence
    }

    /// The decision on one claim. Never fails: a store or policy that does
    /// not answer is a [`Verdict::Defer`].
    pub async fn authenticate(&self, request: AuthRequest<'_>, exchange: &mut Exchange) -> Verdict {
        let AuthRequest { claim, facts, meta } = request;
        if !matches!(claim, Claim::ScriptRound { .. }) {
            // Another claim: a script exchange left unfinished (cancelled
            // with `*`) no longer holds an admission.
            exchange.slot = None;
        }
        match claim {
            Claim::Sasl {
                mechanism,
                credentials,
            } => {
                let outcome = self.sasl(facts, meta, mechanism, credentials).await;
                self.verdict(outcome, meta, Reply::auth_failed()).await
            }
            Claim::ScriptRound {
                mechanism,
                step,
                response,
            } => {
                let outcome = self
                    .script_round(facts, meta, exchange, &mechanism, step, response)
                    .await;
                match outcome {
                    ScriptRound::Challenge(challenge) => Verdict::Challenge(challenge),
                    ScriptRound::Finished(outcome) => {
                        self.verdict(outcome, meta, Reply::auth_failed()).await
                    }
                }
            }
            Claim::ProxyLogin { login } => {
                // The proxy's word replaces whoever was logged in before.
                meta.forget_login();
                let mut outcome = self.proxy_login(facts, meta, &login).await;
                // The proxy vouches for the password, not for the
                // identity's standing: a suspended one is refused here as
                // after any other proof, and the login feeds the history
                // and the signals.
                if let Outcome::Accepted { authn_id, .. } = &outcome {
                    let contained = self.containment.login_accepted(
                        &self.store_calls,
                        facts.client.ip(),
                        authn_id,
                        crate::policy::XCLIENT,
                    );
                    if let Some(refused) = contained.await {
                        outcome = refused;
                    }
                }
                self.verdict(outcome, meta, Reply::xclient_refused()).await
            }
        }
    }

    /// The SCRAM secrets of `authcid` (fake but stable ones for a user who
    /// does not exist) and a server nonce, for a front end running a SCRAM
    /// exchange; `None` when the store cannot answer (`454`).
    pub async fn scram_secrets(
        &self,
        facts: &ConnectionFacts,
        authcid: String,
        hash: ScramHash,
    ) -> Option<ScramFound> {
        let client = facts.nearest_ip();
        crate::verify::lookup_scram(
            &self.authenticator,
            &self.store_calls,
            client,
            authcid,
            hash,
        )
        .await
    }

    /// A SASL claim through the whole pipeline: a banned address gets
    /// `421`; a user cooling down, or an attempt that would pass a ban or
    /// cool-down if the attempts in flight failed, gets `454` unchecked; a
    /// failure is counted and its reply delayed; a success is remembered
    /// (and never delayed).
    async fn sasl(
        &self,
        facts: &ConnectionFacts,
        meta: &ConnMeta,
        mechanism: Mechanism,
        credentials: Credentials,
    ) -> Outcome {
        let ip = facts.client_ip();
        let user = credentials.authcid().to_string();
        let slot = match self
            .defence
            .admit_attempt(facts, mechanism.name(), &user)
            .await
        {
            Ok(slot) => slot,
            Err(refused) => return refused,
        };
        // Kept only to recognise a repeated wrong password; zeroized on drop.
        let password: Option<Secret> = match &credentials {
            Credentials::Password { password, .. } => Some(password.clone()),
            _ => None,
        };
        let decided = match &self.policy {
            Some(policy) => {
                crate::policy::decide(policy, facts, meta, mechanism, &credentials).await
            }
            None => None,
        };
        let outcome = match decided {
            Some(outcome) => outcome,
            None => {
                let verified = crate::verify::check(
                    &self.authenticator,
                    &self.store_calls,
                    facts,
                    mechanism,
                    credentials,
                )
                .await;
                match self.review(facts, meta, mechanism.name(), &verified).await {
                    // The proof was right: a refusal by the script is
                    // policy, not a guess, so it is not counted. It waits
                    // what a wrong password would, or its speed would
                    // confirm the password.
                    // The same login: the app password it used stays.
                    Some(Outcome::Accepted {
                        authn_id, authz_id, ..
                    }) => Outcome::Accepted {
                        authn_id,
                        authz_id,
                        credential: match &verified {
                            Outcome::Accepted { credential, .. } => credential.clone(),
                            _ => None,
                        },
                    },
                    Some(refused) => {
                        self.defence.wait_refusal_delay(ip).await;
                        return refused;
                    }
                    None => verified,
                }
            }
        };
        let secret = password.as_ref().map(Secret::expose);
        self.record(
            ip,
            (&user, &user),
            mechanism.name(),
            secret,
            outcome,
            Some(slot),
        )
        .await
    }

    /// The policy's review of an identity the store verified; `None` when
    /// there is nothing to review (no policy, a refusal, a script that
    /// does not review).
    async fn review(
        &self,
        facts: &ConnectionFacts,
        meta: &ConnMeta,
        mechanism: &str,
        verified: &Outcome,
    ) -> Option<Outcome> {
        let policy = self.policy.as_ref()?;
        let Outcome::Accepted {
            authn_id, authz_id, ..
        } = verified
        else {
            return None;
        };
        crate::policy::review(policy, facts, meta, mechanism, authn_id, authz_id).await
    }

    /// One round of a script mechanism. Admitted like any AUTH before its
    /// first round (bans, attempts in flight; the user a client claims is
    /// the script's business, so failures count against the address and
    /// its network only, under the empty user name, and no cool-down
    /// applies), the admission held until the outcome is counted.
    async fn script_round(
        &self,
        facts: &ConnectionFacts,
        meta: &ConnMeta,
        exchange: &mut Exchange,
        mechanism: &str,
        step: u32,
        response: Option<Secret>,
    ) -> ScriptRound {
        if step <= 1 || exchange.slot.is_none() {
            // A new exchange: one abandoned before its end (cancelled with
            // `*`) does not carry its admission over.
            exchange.slot = None;
            match self.defence.admit_attempt(facts, mechanism, "").await {
                Ok(slot) => exchange.slot = Some(slot),
                // Refused before the script ran: nothing to count.
                Err(refused) => return ScriptRound::Finished(refused),
            }
        }
        let Some(policy) = &self.policy else {
            // Invariant: script mechanisms are offered only with a policy.
            return ScriptRound::Finished(Outcome::Deferred { reply: None });
        };
        match crate::policy::script_step(policy, facts, meta, mechanism, step, response).await {
            ScriptRound::Challenge(challenge) => ScriptRound::Challenge(challenge),
            ScriptRound::Finished(outcome) => {
                let (ip, slot) = (facts.client_ip(), exchange.slot.take());
                // A success is remembered under the identity the script
                // named; failures under none.
                let named = match &outcome {
                    Outcome::Accepted { authn_id, .. } => authn_id.clone(),
                    _ => String::new(),
                };
                let recorded = self
                    .record(ip, (&named, ""), mechanism, None, outcome, slot)
                    .await;
                ScriptRound::Finished(recorded)
            }
        }
    }

    /// A trusted proxy's `XCLIENT LOGIN=`: the general hook is asked as for
    /// a proof our own verification accepted (`auth.verified = true`,
    /// mechanism `XCLIENT`, no password), with `conn.client_ip` the client
    /// the proxy named and `conn.proxy_ip` the proxy. The proxy vouches
    /// that the user authenticated; whether that user may send here is
    /// still the policy's call. Not counted: the proxy guesses nothing.
    async fn proxy_login(&self, facts: &ConnectionFacts, meta: &ConnMeta, login: &str) -> Outcome {
        let vouched = Outcome::Accepted {
            authn_id: login.to_string(),
            authz_id: login.to_string(),
            credential: None,
        };
        match self
            .review(facts, meta, crate::policy::XCLIENT, &vouched)
            .await
        {
            None | Some(Outcome::Accepted { .. }) => vouched,
            // Whatever the script said, the proxy is told its login is
            // refused (`550 5.7.0`), unless it asked for a deferral or a
            // close.
            Some(Outcome::Rejected { .. }) => Outcome::Rejected {
                reply: None,
                challenge: None,
            },
            Some(other) => other,
        }
    }

    /// Counts the outcome of a checked claim: a success is remembered
    /// under `users.0`; a failure is counted under `users.1`, delayed, and
    /// may ban (then `421` and a close).
    /// A policy that defers and hangs up (`kumo.disconnect(421, …)` while
    /// its backend is down) made no judgement on the guess: not counted,
    /// or an outage would ban the users it turned away.
    async fn record(
        &self,
        ip: std::net::IpAddr,
        users: (&str, &str),
        mechanism: &str,
        password: Option<&[u8]>,
        outcome: Outcome,
        slot: Option<AttemptSlot>,
    ) -> Outcome {
        match &outcome {
            Outcome::Accepted { authn_id, .. } => {
                // A suspended identity is refused after the proof (a guess
                // learns nothing) and not counted as a failure; else the
                // login feeds the history and the signals.
                let contained =
                    self.containment
                        .login_accepted(&self.store_calls, ip, authn_id, mechanism);
                if let Some(refused) = contained.await {
                    return refused;
                }
                self.defence.succeeded(ip, users.0).await;
                outcome
            }
            Outcome::Disconnect { reply } if reply.code() / 100 == 4 => outcome,
            // The proof was right, the account refused it (disabled: 525;
            // its own password where app passwords are required: 534). No
            // guess: not counted, or a disabled user's phone retrying
            // would ban its network. It waits what a wrong password would.
            Outcome::Rejected {
                reply: Some(reply), ..
            } if matches!(reply.code(), 525 | 534) => {
                self.defence.wait_refusal_delay(ip).await;
                outcome
            }
            Outcome::Rejected { .. } | Outcome::Disconnect { .. } => {
                self.containment.login_refused(ip, users.0, mechanism);
                let failed = self.defence.failed(ip, users.1, password, outcome, slot);
                failed.await
            }
            Outcome::Deferred { .. } => outcome,
        }
    }

    /// The verdict for an outcome: the identity with its user data and
    /// sender rule, or the reply (`refused` when a refusal names none).
    async fn verdict(&self, outcome: Outcome, meta: &ConnMeta, refused: Reply) -> Verdict {
        match outcome {
            Outcome::Accepted {
                authn_id,
                authz_id,
                credential,
            } => {
                let user_data = meta.user_data();
                let sender_rule = self.sender_rule(&authn_id, &authz_id, &user_data).await;
                Verdict::Accept {
                    authn_id,
                    authz_id,
                    user_data,
                    sender_rule,
                    credential,
                }
            }
            Outcome::Rejected { reply, challenge } => Verdict::Reject {
                reply: reply.unwrap_or(refused),
                close: false,
                oauth_challenge: challenge,
            },
            Outcome::Deferred { reply } => Verdict::Defer {
                reply: reply.unwrap_or_else(Reply::auth_temporary_failure),
            },
            Outcome::Disconnect { reply } => Verdict::Reject {
                reply,
                close: true,
                oauth_challenge: None,
            },
        }
    }

    /// The senders an accepted user owns, when `[senders]` is on. The
    /// store's `may_act_as` entries are read through the store bound; a
    /// store that does not answer leaves only the addresses derived from
    /// the names (fail closed).
    async fn sender_rule(
        &self,
        authn_id: &str,
        authz_id: &str,
        user_data: &Option<serde_json::Value>,
    ) -> Option<SenderRule> {
        let policy = self.senders.as_ref()?;
        let authenticator = self.authenticator.clone();
        let user = authn_id.to_string();
        let may_act_as = match self
            .store_calls
            .run(move || authenticator.identities(&user))
            .await
        {
            Ok(Ok(identities)) => identities,
            Ok(Err(error)) => {
                tracing::warn!(user = %authn_id, %error, "sender check: store unavailable, aliases not loaded");
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(user = %authn_id, %error, "sender check: store unavailable, aliases not loaded");
                Vec::new()
            }
        };
        Some(crate::authorization::sender_rule(
            policy,
            authn_id,
            authz_id,
            may_act_as,
            user_data.as_ref(),
        ))
    }
}
