//! The SMTP wire format, with no I/O.
//!
//! Everything here takes bytes and returns typed values: the line framer
//! ([`line`]) cuts command lines out of a buffer and bounds their length,
//! [`command`] turns one line into a [`Command`], [`data`] receives a DATA
//! body (dot-unstuffing, size limit, the one true end marker), [`bdat`] the
//! chunks of a BDAT transaction (read by length), [`address`] compares
//! internationalised addresses (SMTPUTF8), and [`reply`] is the one catalog of every reply code and enhanced status code the server
//! sends; [`header`] finds header fields of a received message for the
//! authorization checks; [`proxy`] reads the HAProxy PROXY header a load balancer puts
//! before the client's first byte. Nothing here knows about sockets, TLS or time, so all of it is
//! tested and fuzzed as plain functions.

pub mod address;
pub mod bdat;
pub mod command;
pub mod data;
pub mod header;
pub mod line;
pub mod proxy;
pub mod received;
pub mod reply;

pub use command::{Body, Command, CommandError, MailParams, Notify, Path, RcptParams, Ret};
pub use reply::{EhloReply, EnhancedCode, Reply};

/// Longest command line we read, CRLF excluded. RFC 4954 §4 raises the
/// 512-octet limit of RFC 5321 to 12 288 octets for AUTH lines (initial
/// responses and continuations); other commands are held to
/// [`MAX_PLAIN_COMMAND_LEN`] by the parser.
pub const MAX_LINE_LEN: usize = 12_288;
/// Longest line for commands other than AUTH. RFC 5321 says 512 octets;
/// parameters such as `AUTH=` of MAIL push real clients past it, so we
/// allow what most servers allow.
pub const MAX_PLAIN_COMMAND_LEN: usize = 2048;
