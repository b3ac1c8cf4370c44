//! What happened to one recipient in one attempt.

use portcullis_proto::EnhancedCode;
use serde::{Deserialize, Serialize};

use crate::error::status;
use crate::reply::{ReplyClass, ServerReply};

/// A recipient's fate after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop took responsibility (`250` after the dot, or written
    /// to the Maildir).
    Delivered,
    /// Not delivered; see [`Failure::permanent`].
    NotDelivered(Failure),
}

/// Why a recipient was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// 5xx (bounce now) rather than 4xx (retry).
    pub permanent: bool,
    #[serde(with = "status_text")]
    pub status: EnhancedCode,
    /// RFC 3464 Diagnostic-Code value, e.g. `"smtp; 550 5.1.1 No such user"`.
    pub diagnostic: String,
    /// Whether the next hop said it (rather than us diagnosing it).
    pub remote: bool,
}

impl Failure {
    /// A failure the next hop reported in `reply`.
    pub fn from_reply(reply: &ServerReply, permanent: bool) -> Failure {
        let default = if permanent {
            status::PERMANENT
        } else {
            status::TRANSIENT
        };
        let status = reply
            .status
            .filter(|s| (s.0 == 5) == permanent)
            .unwrap_or(default);
        Failure {
            permanent,
            status,
            diagnostic: format!("smtp; {}", reply.summary()),
            remote: true,
        }
    }
}

/// The outcome a reply to RCPT, DATA or the final dot means.
pub fn outcome_of(reply: &ServerReply) -> Outcome {
    match reply.class() {
        ReplyClass::Positive => Outcome::Delivered,
        ReplyClass::Transient => Outcome::NotDelivered(Failure::from_reply(reply, false)),
        ReplyClass::Permanent => Outcome::NotDelivered(Failure::from_reply(reply, true)),
    }
}

/// Enhanced codes are stored as `"5.1.1"` in the state file.
mod status_text {
    use portcullis_proto::EnhancedCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &EnhancedCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&code.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EnhancedCode, D::Error> {
        let text = String::deserialize(d)?;
        let mut parts = text.split('.').map(str::parse::<u16>);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(c)), Some(Ok(s)), Some(Ok(d))) if c < 10 => Ok(EnhancedCode(c as u8, s, d)),
            _ => Err(serde::de::Error::custom(format!("bad status {text:?}"))),
        }
    }
}
