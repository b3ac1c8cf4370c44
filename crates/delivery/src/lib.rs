//! portcullis-delivery: hands spooled messages on to the next hop, and keeps
//! them until it has taken them.
//!
//! A submission server is only useful if what it accepted goes somewhere.
//! This crate is the stage after the spool: workers pick messages in order
//! of arrival, choose a route per recipient ([`route`]), each route with
//! workers of its own ([`lanes`]), and deliver over
//! SMTP or LMTP ([`client`], TCP or a Unix socket, STARTTLS verified by
//! default, optional AUTH, PIPELINING, connection reuse) or into a Maildir
//! ([`maildir`]). Each recipient gets its own outcome: delivered, deferred
//! (4xx, connection trouble: retried with exponential back-off,
//! [`backoff`]) or failed (5xx, or too old: a DSN to the sender, [`dsn`]).
//!
//! # The promise
//!
//! A message leaves the spool only after the next hop answered `250` after
//! the dot (per recipient for LMTP) or after its bounce was spooled. Retry
//! state ([`state`]) lives beside the message and is written atomically. A
//! crash at any point delivers again rather than losing: at-least-once. See
//! [`engine`] for the order of the steps and the duplicate window.
//!
//! # Why our own client
//!
//! lettre cannot speak LMTP, folds RCPT outcomes into one error and has no
//! XCLIENT; the client here is ~300 lines on tokio and rustls with a reply
//! parser ([`reply`]) of its own. The reply *catalog* of `portcullis-proto`
//! is for replies we send; this crate only reads replies.
//!
//! # What this crate does not do
//!
//! MX look-ups (routes name a smarthost, an LMTP server or a directory),
//! DSN requests from clients (NOTIFY/RET), per-domain rate limits, metrics
//! beyond log lines.

pub mod backoff;
pub mod client;
pub mod dsn;
pub mod engine;
mod error;
pub mod lanes;
pub mod maildir;
pub mod message;
pub mod outcome;
pub mod reply;
pub mod route;
pub mod state;
pub mod tls;

pub use engine::{Engine, ResultObserver};
pub use error::{status, DeliveryError};
pub use outcome::{Failure, Outcome};
pub use state::DeliveryState;
