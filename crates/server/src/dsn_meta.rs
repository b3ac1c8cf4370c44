//! The DSN requests of an envelope (RFC 3461) as the spool records them:
//! the session's typed parameters become the metadata's plain strings,
//! which delivery reads back to pass them on and to honour them.

use portcullis_session::Envelope;
use portcullis_spool::{DsnMeta, RcptDsnMeta};

/// The DSN requests of the envelope (RFC 3461), `None` when it made none.
pub(crate) fn of(envelope: &Envelope) -> Option<DsnMeta> {
    let recipients: Vec<RcptDsnMeta> = envelope
        .rcpt_to
        .iter()
        .zip(&envelope.rcpt_params)
        .filter(|(_, p)| p.notify.is_some() || p.orcpt.is_some())
        .map(|(rcpt, p)| RcptDsnMeta {
            rcpt: rcpt.clone(),
            notify: p.notify.map(|n| n.to_value()),
            orcpt: p.orcpt.clone(),
        })
        .collect();
    let params = &envelope.params;
    let dsn = DsnMeta {
        ret: params.ret.map(|r| r.as_str().to_string()),
        envid: params.envid.clone(),
        recipients,
    };
    (dsn != DsnMeta::default()).then_some(dsn)
}
