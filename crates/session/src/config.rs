//! What a listener lets its sessions do.

use portcullis_sasl::Mechanism;

/// Whether a listener offers and requires AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No AUTH at all (a plain relay port): MAIL is allowed without it.
    Disabled,
    /// AUTH is offered; MAIL needs it first (submission, RFC 6409).
    Required,
    /// AUTH is offered (under the same TLS rule) but MAIL is allowed without
    /// it (Nodemailer's `authOptional`). A session that authenticates is
    /// treated exactly as on a `Required` listener; one that does not sends
    /// with no identity and no sender rule, and is not held to the
    /// unauthenticated-command limit, since not authenticating is allowed.
    Optional,
}

/// Per-listener session settings, fixed for the session's life.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name in the greeting, EHLO and Received headers.
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub auth: AuthPolicy,
    /// Offer AUTH without TLS. Sends passwords in clear: off by default.
    pub allow_insecure_auth: bool,
    /// STARTTLS is offered (a certificate is configured and the listener is
    /// not already implicit TLS).
    pub starttls: bool,
    /// The mechanisms we offer, in the order we advertise them.
    pub mechanisms: Vec<Mechanism>,
    /// Mechanisms the policy script implements, advertised after ours
    /// (upper case; never the name of one of ours).
    pub script_mechanisms: Vec<String>,
    /// The text of the `530 5.7.0` sent for MAIL before AUTH (Nodemailer's
    /// `authRequiredMessage`); `None`: the catalog's. The config crate
    /// guarantees one bounded line of printable ASCII.
    pub auth_required_message: Option<String>,
    /// Commands allowed before AUTH succeeds where it is required; AUTH
    /// itself is not counted (failures have `max_auth_failures`). `0`: no
    /// limit.
    pub max_unauthenticated_commands: u32,
    /// Failed AUTH attempts allowed on one connection.
    pub max_auth_failures: u32,
    /// Unknown or malformed commands allowed on one connection; past it,
    /// `421` and close.
    pub max_invalid_commands: u32,
    /// How user names are canonicalised before the driver sees them
    /// (AUTH, SCRAM look-ups, XCLIENT LOGIN): once, here, so the store,
    /// caches, counters, bans, logs and the spool all see one name.
    pub username_profile: portcullis_sasl::UsernameProfile,
    /// Ask the driver ([`crate::Effect::CheckSending`]) before accepting
    /// MAIL and each RCPT of an authenticated client: sending limits and
    /// compromise answers live outside the session.
    pub check_sending: bool,
}

impl SessionConfig {
    /// Development defaults for `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        SessionConfig {
            hostname: hostname.into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            auth: AuthPolicy::Required,
            allow_insecure_auth: false,
            starttls: true,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            script_mechanisms: Vec::new(),
            auth_required_message: None,
            max_unauthenticated_commands: 10,
            max_auth_failures: 3,
            max_invalid_commands: 10,
            username_profile: portcullis_sasl::UsernameProfile::default(),
            check_sending: false,
        }
    }
}
