//! BDAT (RFC 3030 CHUNKING): a message sent as chunks read by length.
//!
//! Every chunk is read to its end, whatever its fate: its octets are data,
//! and reading them as commands would let message text act on the session.
//! Whether a chunk is kept is decided when it is declared, before any of
//! it is buffered: it needs a transaction with a recipient and room under
//! the size limit. A refused chunk fails the transaction (RFC 3030 §2: the
//! client sends no more chunks after a failure reply, and the ones already
//! pipelined are read and answered `503`, as BDAT without a transaction).
//! The last chunk ends the message like the end of DATA: the `250` comes
//! only after the driver stored it.

use portcullis_proto::bdat::{Chunk, ChunkedBody};
use portcullis_proto::Reply;

use crate::session::{Phase, Session, Step};

/// `BDAT size [LAST]` was read: go on reading its chunk.
pub(crate) fn start(session: &mut Session, size: u64, last: bool) {
    let max = session.config.max_message_size;
    let refusal = match &session.transaction {
        _ if session.helo.is_none() => Some(Reply::need_ehlo()),
        None => Some(Reply::need_mail()),
        Some(envelope) if envelope.rcpt_to.is_empty() => Some(Reply::need_rcpt()),
        Some(_) => match session
            .bdat
            .get_or_insert_with(|| ChunkedBody::new(max))
            .admit(size)
        {
            Ok(()) => None,
            Err(_) => Some(Reply::message_too_big()),
        },
    };
    if refusal.is_some() {
        // The transaction has failed; what it buffered goes now.
        session.transaction = None;
        session.bdat = None;
    }
    session.phase = Phase::Chunk {
        chunk: Chunk::new(size),
        size,
        last,
        refusal,
    };
}

/// The chunk's octets have all been read.
pub(crate) fn chunk_done(session: &mut Session, out: &mut Vec<u8>) -> Step {
    let Phase::Chunk {
        size,
        last,
        refusal,
        ..
    } = std::mem::replace(&mut session.phase, Phase::Command)
    else {
        // Invariant: called only from the Chunk phase.
        return Step::Continue;
    };
    if let Some(reply) = refusal {
        reply.write_to(out);
        return Step::Continue;
    }
    if !last {
        Reply::chunk_received(size).write_to(out);
        return Step::Continue;
    }
    // Invariant: a kept chunk was admitted into `bdat` by `start`.
    let body = session.bdat.take().unwrap_or_else(|| ChunkedBody::new(0));
    session.message_done(body.finish(), out)
}
