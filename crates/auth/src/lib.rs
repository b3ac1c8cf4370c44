//! The authentication decision: given what a client presented through a
//! SASL mechanism, look the user up, verify the secret in constant time, and
//! check the authorization identity.
//!
//! The answer is a [`Decision`] whose reasons are precise (unknown user,
//! wrong password, no usable secret, refused authzid, store down) so the log
//! can say exactly what happened, while the client only ever learns
//! "accepted", "invalid credentials" or "try later": telling an attacker
//! which user names exist is the classic leak, and an unknown user costs the
//! same hashing time as a wrong password.
//!
//! The check may block (the store reads disk, hashing takes tens of
//! milliseconds by design): callers run it on a blocking pool. Two things
//! keep that cost in check: a [verified-credential cache](cache) so a
//! user's slow hash is paid once per TTL, and a bound on concurrent slow
//! verifications with a short, bounded queue with a deadline (see
//! [`slots`]): a burst of cold logins waits a moment for a slot, while a
//! flood past the queue is answered "try later" at once.
//!
//! A refused credential is answered no sooner than a [floor](floor) above
//! the slowest verification in use, so an imported `{PLAIN}` user's wrong
//! password takes as long as an unknown user's; and a weak stored hash is
//! replaced by argon2id at the user's next successful login, where the
//! store can be written.

mod cache;
mod floor;
mod records;
mod rehash;
mod slots;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache::{NotVerified, Source, VerifiedCache};
use floor::{Cost, FailureFloor};
use records::RecordCache;
pub use records::VERSION_POLL;
use slots::{NoSlot, VerificationSlots};

use portcullis_credentials::{scheme, CredentialStore, StoreError, UserRecord, Verification};
use portcullis_sasl::{Credentials, Secret};

mod introspection;
mod jwks;
mod oauth;
mod reachability;
mod scram;

pub use jwks::JwksError;
pub use oauth::{OAuthError, TokenError, TokenValidator};
pub use scram::ScramUpgrade;

/// The verdict on one authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accepted {
        authn_id: String,
        authz_id: String,
    },
    Rejected(RejectReason),
    /// The store could not answer; the client should try again later.
    Unavailable(String),
}

/// Why credentials were refused. For logs and `auth test`, never the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownUser,
    WrongPassword,
    /// The user exists but has no secret this mechanism can check (no
    /// password hash, no CRAM-MD5 keys, or a stored hash we cannot read).
    NoUsableSecret,
    /// The authzid is neither the user nor one it may act as.
    AuthzidRefused,
    /// SCRAM -PLUS: the client bound to another TLS channel than ours.
    ChannelBindingMismatch,
    /// A bearer token that is not valid (signature, issuer, audience,
    /// expiry, or no user claim).
    InvalidToken,
    /// A valid bearer token, but for another user than the one named.
    TokenForAnotherUser,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::UnknownUser => "unknown user",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::NoUsableSecret => "no usable secret for this mechanism",
            RejectReason::AuthzidRefused => "authorization identity refused",
            RejectReason::ChannelBindingMismatch => "channel binding does not match (MITM?)",
            RejectReason::InvalidToken => "invalid bearer token",
            RejectReason::TokenForAnotherUser => "bearer token is for another user",
        })
    }
}

/// Tuning of the decision's cost.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// How long a verified password is remembered; zero disables the cache.
    pub verified_cache_ttl: Duration,
    /// Users remembered at most.
    pub verified_cache_capacity: u64,
    /// Slow hash verifications allowed at once; past it, a login waits.
    /// Default: [`default_verification_slots`].
    pub max_concurrent_verifications: usize,
    /// How long a login waits for a free hash slot before `Unavailable`
    /// (zero: not at all). Default: [`DEFAULT_SLOT_WAIT`].
    pub slot_wait: Duration,
    /// Logins that may wait for a hash slot at once; past it, `Unavailable`
    /// at once. Default: [`DEFAULT_SLOT_QUEUE`].
    pub slot_queue: usize,
    /// A refused credential is answered no sooner than this (or than a
    /// margin above the slowest verification seen, if that is longer).
    pub failure_floor: Duration,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            verified_cache_ttl: Duration::from_secs(300),
            verified_cache_capacity: 100_000,
            max_concurrent_verifications: default_verification_slots(),
            slot_wait: DEFAULT_SLOT_WAIT,
            slot_queue: DEFAULT_SLOT_QUEUE,
            failure_floor: Duration::ZERO,
        }
    }
}

/// Memory one argon2id verification with our default parameters holds
/// (m = 19456 KiB).
pub const ARGON2_MEMORY_BYTES: usize = 19456 * 1024;
/// What all hash slots together may hold by default.
pub const VERIFICATION_MEMORY_BUDGET_BYTES: usize = 256 * 1024 * 1024;

/// The default bound on concurrent slow verifications: two per core (a
/// hash is CPU-bound; more would only queue), at most what the memory
/// budget allows at argon2id's 19 MiB each (13), at least 4 (so a small
/// burst of cold logins is not deferred). On a 1- or 2-core machine, 4
/// slots: a flood of wrong passwords holds at most 76 MiB of hash memory;
/// from 7 cores on, 13 slots and 247 MiB.
pub fn default_verification_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = VERIFICATION_MEMORY_BUDGET_BYTES / ARGON2_MEMORY_BYTES;
    (cores * 2).min(by_memory).max(4)
}

/// How long a login waits for a hash slot by default. Measured with
/// `bench/cold-logins.sh` (200 users logging in at once on a just-started
/// server, 2 cores, 4 slots): two cores hash 30 to 50 argon2id a second,
/// so the burst takes 4 to 7 s to drain; with a 2 s wait about half the
/// logins still got `454`. Mail clients wait far longer than this for a
/// reply.
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(5);

/// How many logins may wait for a hash slot by default. A waiter holds a
/// parked thread of the blocking pool (no hash memory), so this bounds
/// threads, not memory: 256 is half of tokio's default pool of 512, and
/// room for a burst of a few hundred cold logins.
pub const DEFAULT_SLOT_QUEUE: usize = 256;

/// Checks credentials against one store.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn CredentialStore>,
    /// Key for the fake SCRAM secrets of unknown users.
    scram_key: Arc<Secret>,
    /// Checks OAUTHBEARER/XOAUTH2 tokens; `None`: those are not offered.
    tokens: Option<Arc<TokenValidator>>,
    cache: Option<Arc<VerifiedCache>>,
    /// User records between store changes; kept with the verified cache.
    records: Option<Arc<RecordCache>>,
    verifications: Arc<VerificationSlots>,
    /// How long a refusal takes at least.
    floor: Arc<FailureFloor>,
}

impl Authenticator {
    /// An authenticator with a random key for fake SCRAM salts; use
    /// [`Authenticator::with_scram_key`] to keep them stable across restarts.
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        Self::with_options(store, &AuthOptions::default())
    }

    pub fn with_options(store: Arc<dyn CredentialStore>, options: &AuthOptions) -> Self {
        let cache = (!options.verified_cache_ttl.is_zero()).then(|| {
            Arc::new(VerifiedCache::new(
                options.verified_cache_ttl,
                options.verified_cache_capacity,
            ))
        });
        let records = (!options.verified_cache_ttl.is_zero()).then(|| {
            Arc::new(RecordCache::new(
                options.verified_cache_ttl,
                options.verified_cache_capacity,
            ))
        });
        let key: [u8; 32] = rand::random();
        Authenticator {
            store,
            scram_key: Arc::new(Secret::new(key.to_vec())),
            tokens: None,
            cache,
            records,
            verifications: Arc::new(VerificationSlots::new(
                options.max_concurrent_verifications,
                options.slot_queue,
                options.slot_wait,
            )),
            floor: Arc::new(FailureFloor::new(options.failure_floor)),
        }
    }

    /// Accepts bearer tokens (OAUTHBEARER, XOAUTH2) that `validator` accepts.
    pub fn with_token_validator(mut self, validator: TokenValidator) -> Self {
        self.tokens = Some(Arc::new(validator));
        self
    }

    /// How long [`Authenticator::check`] may wait for a hash slot, on top
    /// of its store calls and its hash: callers that bound the whole check
    /// in time add this while [`Authenticator::hashing`].
    pub fn slot_wait(&self) -> Duration {
        self.verifications.wait()
    }

    /// Whether a slow hash runs or a login waits for a hash slot now. A
    /// check that takes long while nothing hashes is stuck in the store.
    pub fn hashing(&self) -> bool {
        self.verifications.in_use()
    }

    /// How many checks may wait for a hash slot at once: callers that
    /// bound concurrent checks leave room for them.
    pub fn slot_queue(&self) -> usize {
        self.verifications.max_waiting()
    }

    /// Whether OAUTHBEARER and XOAUTH2 can be offered.
    pub fn tokens_available(&self) -> bool {
        self.tokens.is_some()
    }

    /// Whether the token issuer's remote endpoints (JWKS URL,
    /// introspection) answered their last call; `None` when tokens are
    /// not offered or checked without any remote call.
    pub fn token_issuer_up(&self) -> Option<bool> {
        self.tokens.as_ref()?.issuer_up()
    }

    /// The decision on a bearer token, and why it was refused (for the
    /// log: "expired", "token is for bob"...). No I/O.
    pub fn check_token(
        &self,
        named_user: Option<&str>,
        token: &Secret,
    ) -> (Decision, Option<String>) {
        oauth::decide(self.tokens.as_deref(), named_user, token)
    }

    /// Sets the key fake SCRAM secrets are derived from. A key that
    /// changed at a restart would change every unknown user's salt while
    /// real users' stay: keep it in the data directory.
    pub fn with_scram_key(mut self, key: Secret) -> Self {
        self.scram_key = Arc::new(key);
        self
    }

    /// Whether SCRAM can be offered: some user has SCRAM secrets. May block.
    pub fn scram_available(&self) -> Result<bool, StoreError> {
        self.store.has_scram_secrets()
    }

    /// Whether CRAM-MD5 can be offered: some user has CRAM-MD5 keys.
    /// May block.
    pub fn cram_md5_available(&self) -> Result<bool, StoreError> {
        self.store.has_cram_md5_keys()
    }

    /// The identities `user` may act as, from the store (sender and
    /// tenant authorization). May block: call off the async workers.
    pub fn identities(&self, user: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .lookup(user)?
            .map(|record| record.may_act_as)
            .unwrap_or_default())
    }

    /// Asks the store for its version, so that cached user records are
    /// dropped once it changed. Blocking; the server calls it every
    /// [`VERSION_POLL`].
    pub fn refresh_store_version(&self) {
        if let Some(records) = &self.records {
            records.set_version(self.store.version().ok().flatten());
        }
    }

    /// Decides on a password login without blocking, when it can: the
    /// user's record is cached at the store's current version, this exact
    /// password was verified against its hash lately, and the login would
    /// not store SCRAM secrets. `None`: call [`Authenticator::check`] off
    /// the async workers.
    pub fn check_cached(&self, credentials: &Credentials) -> Option<Decision> {
        let Credentials::Password {
            authcid, password, ..
        } = credentials
        else {
            return None;
        };
        let record = self.records.as_ref()?.get(authcid)?;
        let stored = record.password.as_ref()?;
        // Without SCRAM secrets, the full check would store some.
        record.scram.sha256.as_ref()?;
        if !self
            .cache
            .as_ref()?
            .contains(&record.name, stored, password)
        {
            return None;
        }
        metrics::counter!("portcullis_auth_cache_total", "result" => "hit").increment(1);
        Some(decide(Ok(()), Some(&record), credentials))
    }

    /// The user's record: cached at the store's current version, or read.
    fn lookup_record(&self, user: &str) -> Result<Option<Arc<UserRecord>>, StoreError> {
        let Some(records) = &self.records else {
            return Ok(self.store.lookup(user)?.map(Arc::new));
        };
        if let Some(record) = records.get(user) {
            return Ok(Some(record));
        }
        let version = records.version();
        let record = self.store.lookup(user)?.map(Arc::new);
        if let (Some(version), Some(record)) = (version, &record) {
            records.insert(user, version, record.clone());
        }
        Ok(record)
    }

    /// Decides on `credentials`. May block: call off the async workers.
    /// A refusal returns no sooner than the failure floor (see [`floor`]);
    /// an accepted password stored in a weak scheme is re-hashed with
    /// argon2id (see [`rehash`]).
    pub fn check(&self, credentials: &Credentials) -> Decision {
        if let Credentials::Bearer { user, token } = credentials {
            return self.check_token(user.as_deref(), token).0;
        }
        let started = Instant::now();
        let decision = self.check_secret(credentials);
        match &decision {
            Decision::Rejected(_) => self.hold_refusal(started),
            Decision::Accepted { .. } => self.upgrade_hash(credentials),
            Decision::Unavailable(_) => {}
        }
        decision
    }

    /// Waits until a refusal that started at `started` has taken the floor.
    fn hold_refusal(&self, started: Instant) {
        // The floor must know an unknown user's cost before the first
        // refusal of a user whose scheme is cheaper. The first hash of a
        // process also pays for faulting its memory in: time the second.
        // One thread measures; a burst of refusals waits for it.
        self.floor.learn_dummy(|| {
            let dummy = Secret::from("portcullis-floor");
            scheme::verify_dummy(&dummy);
            let measured = Instant::now();
            scheme::verify_dummy(&dummy);
            measured.elapsed()
        });
        let wait = self.floor.remaining(started.elapsed(), rand::random());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    fn check_secret(&self, credentials: &Credentials) -> Decision {
        let record = match self.lookup_record(credentials.authcid()) {
            Ok(record) => record,
            Err(error) => {
                // Hash anyway: a failing store should not answer faster.
                // Within a slot like any hash: a flood while the store is
                // down must not hold unbounded hash memory.
                if let Credentials::Password { password, .. } = credentials {
                    if let Some(_slot) = self.verifications.try_take() {
                        scheme::verify_dummy(password);
                    }
                }
                return Decision::Unavailable(error.to_string());
            }
        };
        let verified = match credentials {
            Credentials::Password { password, .. } => {
                match self.verify_password(record.as_deref(), password) {
                    Ok(verified) => verified,
                    Err(Busy(why)) => {
                        let (reason, text) = match why {
                            NoSlot::QueueFull => (
                                "queue_full",
                                "too many password verifications in flight and waiting".into(),
                            ),
                            NoSlot::TimedOut => (
                                "timed_out",
                                format!(
                                    "no password verification slot freed within {:?}",
                                    self.verifications.wait()
                                ),
                            ),
                        };
                        metrics::counter!("portcullis_auth_verifications_refused_total", "reason" => reason)
                            .increment(1);
                        return Decision::Unavailable(text);
                    }
                }
            }
            Credentials::CramMd5 {
                challenge, digest, ..
            } => verify_cram_md5(record.as_deref(), challenge, digest),
            Credentials::Scram { hash, outcome, .. } => {
                scram::verify(record.as_deref(), *hash, outcome)
            }
            // The TLS layer verified the certificate against our CA; the
            // user must still exist, so removing a user locks out their
            // certificate too without revoking it.
            Credentials::External { .. } => match &record {
                Some(_) => Ok(()),
                None => Err(RejectReason::UnknownUser),
            },
            _ => Err(RejectReason::NoUsableSecret),
        };
        decide(verified, record.as_deref(), credentials)
    }
}

/// No slow-verification slot was free within the wait, and why.
struct Busy(NoSlot);

impl Authenticator {
    /// Verifies a password: from the cache when this exact (user, stored
    /// hash, password) was verified lately, else by the slow hash, within a
    /// bounded number of concurrent verifications (waiting a moment for a
    /// slot, see [`slots`]). Unknown users and users without a password pay
    /// a dummy verification, waiting alike, so timing tells nothing.
    fn verify_password(
        &self,
        record: Option<&UserRecord>,
        password: &portcullis_sasl::Secret,
    ) -> Result<Result<(), RejectReason>, Busy> {
        let Some((user, stored)) =
            record.and_then(|r| r.password.as_ref().map(|p| (r.name.as_str(), p)))
        else {
            let _slot = self.verifications.take().map_err(Busy)?;
            let started = Instant::now();
            scheme::verify_dummy(password);
            self.floor.observe(Cost::Dummy, started.elapsed());
            let reason = match record {
                None => RejectReason::UnknownUser,
                Some(_) => RejectReason::NoUsableSecret,
            };
            return Ok(Err(reason));
        };
        let slow = || {
            let _slot = self.verifications.take().map_err(NotVerified::Busy)?;
            let started = Instant::now();
            let verified = scheme::verify(stored, password);
            let cost = scheme::family(stored).map_or(Cost::Unusable, Cost::Stored);
            self.floor.observe(cost, started.elapsed());
            match verified {
                Ok(Verification::Match) => Ok(()),
                Ok(Verification::Mismatch) => {
                    Err(NotVerified::Rejected(RejectReason::WrongPassword))
                }
                Err(_) => Err(NotVerified::Rejected(RejectReason::NoUsableSecret)),
            }
        };
        let result = match &self.cache {
            Some(cache) => {
                let (result, source) = cache.verify(user, stored, password, slow);
                let label = match source {
                    Source::Cache => "hit",
                    Source::Verified => "miss",
                };
                metrics::counter!("portcullis_auth_cache_total", "result" => label).increment(1);
                result
            }
            None => slow(),
        };
        match result {
            Ok(()) => Ok(Ok(())),
            Err(NotVerified::Rejected(reason)) => Ok(Err(reason)),
            Err(NotVerified::Busy(why)) => Err(Busy(why)),
        }
    }
}

fn verify_cram_md5(
    record: Option<&UserRecord>,
    challenge: &[u8],
    digest: &[u8; 16],
) -> Result<(), RejectReason> {
    let record = record.ok_or(RejectReason::UnknownUser)?;
    let keys = record
        .cram_md5
        .as_ref()
        .ok_or(RejectReason::NoUsableSecret)?;
    match keys.verify(challenge, digest) {
        Verification::Match => Ok(()),
        Verification::Mismatch => Err(RejectReason::WrongPassword),
    }
}

/// The decision once the secret is checked: rejected with the reason, or
/// accepted if the authorization identity is allowed.
fn decide(
    verified: Result<(), RejectReason>,
    record: Option<&UserRecord>,
    credentials: &Credentials,
) -> Decision {
    match verified.and_then(|()| authorize(record, credentials)) {
        Ok(authz_id) => Decision::Accepted {
            authn_id: credentials.authcid().to_string(),
            authz_id,
        },
        Err(reason) => Decision::Rejected(reason),
    }
}

/// The authorization identity (RFC 4616 §2, RFC 4422 §3.4.1): empty or the
/// user's own name means the user itself; anything else only if the store
/// lists it in `may_act_as` (or lists `*`).
fn authorize(
    record: Option<&UserRecord>,
    credentials: &Credentials,
) -> Result<String, RejectReason> {
    let authcid = credentials.authcid();
    let Some(authzid) = credentials.authzid().filter(|z| *z != authcid) else {
        return Ok(authcid.to_string());
    };
    let allowed = record.is_some_and(|r| r.may_act_as.iter().any(|m| m == authzid || m == "*"));
    if allowed {
        Ok(authzid.to_string())
    } else {
        Err(RejectReason::AuthzidRefused)
    }
}

#[cfg(test)]
mod tests;
