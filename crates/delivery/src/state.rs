//! The retry state of one message, kept as `queue/<id>.state` (JSON).
//!
//! It records which recipients are still to be tried, so a message with
//! three recipients where one was deferred is retried for that one only,
//! and it survives restarts. The spool writes it atomically
//! (tmp → fsync → rename → fsync); a message without one has never been
//! tried.

use serde::{Deserialize, Serialize};

use portcullis_spool::{MessageId, Spool};

use crate::outcome::Failure;
use crate::DeliveryError;

/// What delivery knows about a message between attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (milliseconds since the Unix epoch); 0 = now.
    pub next_attempt_ms: u64,
    /// Recipients still to deliver; `None` = all of the envelope.
    pub pending: Option<Vec<String>>,
    /// Recipients the next hop accepted.
    #[serde(default)]
    pub delivered: Vec<String>,
    /// Recipients bounced (a DSN was spooled or, for `<>`, dropped).
    #[serde(default)]
    pub bounced: Vec<String>,
    /// The last temporary failure, for `queue list` and the eventual DSN.
    pub last_failure: Option<Failure>,
    /// The operator's word on holding (`portcullis queue hold|release
    /// --user`): `Some(true)` held, `Some(false)` released; `None`: held
    /// when the message was spooled held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<bool>,
}

impl DeliveryState {
    /// Whether the message waits for a release instead of being delivered.
    pub fn is_held(&self, meta: &portcullis_spool::MessageMeta) -> bool {
        self.hold.unwrap_or(meta.held.is_some())
    }

    /// Whether the message may be tried at `now_ms`.
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.next_attempt_ms <= now_ms
    }
}

/// Reads the state of `id`; the default when none was written. Blocking.
pub fn load(spool: &Spool, id: &MessageId) -> Result<DeliveryState, DeliveryError> {
    match spool.read_state(id)? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
        None => Ok(DeliveryState::default()),
    }
}

/// Writes the state of `id` durably. Blocking.
pub fn save(spool: &Spool, id: &MessageId, state: &DeliveryState) -> Result<(), DeliveryError> {
    let bytes = serde_json::to_vec_pretty(state)?;
    spool.write_state(id, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_proto::EnhancedCode;

    #[test]
    fn round_trips_with_readable_status() {
        let state = DeliveryState {
            attempts: 2,
            next_attempt_ms: 1234,
            pending: Some(vec!["b@x.test".into()]),
            delivered: vec!["a@x.test".into()],
            bounced: vec![],
            last_failure: Some(Failure {
                permanent: false,
                status: EnhancedCode(4, 4, 1),
                diagnostic: "x-portcullis; refused".into(),
                remote: false,
            }),
            hold: None,
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"4.4.1\""), "{json}");
        assert_eq!(serde_json::from_str::<DeliveryState>(&json).unwrap(), state);
        assert!(state.is_due(1234) && !state.is_due(1233));
    }
}
