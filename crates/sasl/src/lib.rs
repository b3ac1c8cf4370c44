//! Server side of the SASL mechanisms, as pure step machines.
//!
//! A mechanism never touches a socket and never looks anything up: it takes
//! the client's decoded responses one at a time and answers with either a
//! challenge to send (`334`) or the [`Credentials`] the client presented.
//! Checking those credentials against a store is the `auth` crate's job, so
//! a slow store never blocks inside a mechanism and every mechanism shares
//! one decision path.
//!
//! SCRAM is the one mechanism that needs the store *during* the exchange
//! (the salt goes into the server's first message): it pauses with
//! [`Step::NeedSecrets`] and the driver resumes it, see [`scram`].
//!
//! Base64 framing of SMTP AUTH (RFC 4954 §4: `*` cancels, `=` is an empty
//! initial response) lives in [`framing`]; the mechanisms only ever see
//! decoded octets.

mod external;
pub mod framing;
mod mechanism;
pub mod oauth;
pub mod scram;
mod secret;
pub mod username;

pub use mechanism::{Credentials, Exchange, Mechanism, SaslError, StartContext, Step};
pub use scram::{ChannelBinding, ScramHash, ScramOutcome, ScramSecrets, SecretsRequest};
pub use secret::Secret;
pub use username::UsernameProfile;

/// Longest user name or authorization identity we accept, in octets.
///
/// RFC 4616 asks servers to take at least 255 octets in each PLAIN field;
/// we allow more so that long e-mail-address logins work, but keep a bound.
pub const MAX_IDENTITY_LEN: usize = 1024;
/// Longest password we accept, in octets.
pub const MAX_PASSWORD_LEN: usize = 1024;
