//! The answer of one stage of the auth pipeline (policy, store), before
//! the pipeline turns it into the service's [`Verdict`]. A leaf.
//!
//! [`Verdict`]: crate::auth_service::Verdict

use portcullis_proto::Reply;

/// What a stage decided about one claim.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Accepted {
        authn_id: String,
        authz_id: String,
    },
    /// `535 5.7.8` unless `reply` says otherwise.
    Rejected {
        reply: Option<Reply>,
    },
    /// `454 4.7.0` unless `reply` says otherwise.
    Deferred {
        reply: Option<Reply>,
    },
    /// Refused, and the connection is to be closed after `reply`.
    Disconnect {
        reply: Reply,
    },
}
