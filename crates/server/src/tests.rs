//! In-process tests of the server crate: a real [`Session`] driven by the
//! real connection loop over an in-memory pipe (`tokio::io::duplex`), with
//! a credential store from a TOML file in a temporary directory, the real
//! defence and, where a test needs one, a real Lua policy. They run on
//! tokio's paused clock: failure delays, cool-downs and timeouts pass
//! without a sleep, and no socket is opened.
//!
//! [`Session`]: portcullis_session::Session

mod harness;

mod auth_paths;
mod pipelining;
mod policy_paths;
mod service_direct;
mod xclient_paths;
