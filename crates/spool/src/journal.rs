//! The journal's record format: pure encoding and decoding, no I/O.
//!
//! A segment file is [`MAGIC`] followed by frames. A frame is
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 of the payload
//! payload:
//!   u8      kind (1 = message, 2 = removed)
//!   u8      id length, then the id (ASCII)
//!   kind 1: u32 LE metadata length, the metadata JSON, then the message
//! ```
//!
//! The CRC makes a torn write at the end of a segment (a crash during an
//! append whose fsync never returned) recognisable: scanning stops at the
//! first frame that is short or does not check, and nothing after it in that
//! segment is trusted. The writer never appends after a failed write, so
//! only the unacknowledged tail is ever lost.

use crate::MessageId;

/// The first bytes of every segment, naming the format and its version.
pub(crate) const MAGIC: &[u8; 8] = b"PCSPOOL1";

/// Length and CRC before each payload.
pub(crate) const FRAME_HEADER: usize = 8;

const KIND_MESSAGE: u8 = 1;
const KIND_REMOVED: u8 = 2;

/// One journal entry, borrowing from the bytes it was decoded from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// An accepted message: its id, its metadata JSON and its bytes.
    Message {
        id: &'a str,
        json: &'a [u8],
        message: &'a [u8],
    },
    /// The message with this id was delivered, bounced or deleted.
    Removed { id: &'a str },
}

/// Appends one frame holding `record` to `out`; returns the frame's length.
pub(crate) fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    let (kind, id) = match record {
        Record::Message { id, .. } => (KIND_MESSAGE, id),
        Record::Removed { id } => (KIND_REMOVED, id),
    };
    out.push(kind);
    // Invariant: ids are MessageId strings, 25 ASCII bytes.
    out.push(u8::try_from(id.len()).expect("message ids are short"));
    out.extend_from_slice(id.as_bytes());
    if let Record::Message { json, message, .. } = record {
        out.extend_from_slice(&len_u32(json.len()).to_le_bytes());
        out.extend_from_slice(json);
        out.extend_from_slice(message);
    }
    let payload = &out[start + FRAME_HEADER..];
    let len = len_u32(payload.len()).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
    out.len() - start
}

fn len_u32(len: usize) -> u32 {
    // Messages are bounded by the server's size limit, far below 4 GiB.
    u32::try_from(len).expect("journal record under 4 GiB")
}

/// Decodes the frame at the start of `bytes`: the record and the frame's
/// length, or `None` if the frame is incomplete, fails its CRC or is
/// malformed (all of which mean "the trustworthy part of the segment ends
/// here").
pub(crate) fn decode(bytes: &[u8]) -> Option<(Record<'_>, usize)> {
    let header = bytes.get(..FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(FRAME_HEADER..FRAME_HEADER.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let (&kind, rest) = payload.split_first()?;
    let (&id_len, rest) = rest.split_first()?;
    let id = rest.get(..id_len as usize)?;
    let id = std::str::from_utf8(id).ok()?;
    id.parse::<MessageId>().ok()?;
    let rest = &rest[id_len as usize..];
    let record = match kind {
        KIND_MESSAGE => {
            let json_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let json = rest.get(4..4usize.checked_add(json_len)?)?;
            let message = &rest[4 + json_len..];
            Record::Message { id, json, message }
        }
        KIND_REMOVED if rest.is_empty() => Record::Removed { id },
        _ => return None,
    };
    Some((record, FRAME_HEADER + len))
}

/// The frames of a segment's contents after [`MAGIC`], with their offsets
/// in the file, up to the first one that does not decode. (The spool reads
/// segments frame by frame instead; see `index::next_frame`.)
#[cfg(test)]
pub(crate) fn frames(body: &[u8]) -> impl Iterator<Item = (u64, usize, Record<'_>)> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (record, len) = decode(&body[at..])?;
        let offset = (MAGIC.len() + at) as u64;
        at += len;
        Some((offset, len, record))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00062f1c3a9b2e10-9f03a1c7";

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        let message = Record::Message {
            id: ID,
            json: b"{\"a\":1}",
            message: b"Subject: x\r\n\r\nbody\r\n",
        };
        let first = encode(&message, &mut out);
        let second = encode(&Record::Removed { id: ID }, &mut out);
        assert_eq!(first + second, out.len());
        let got: Vec<_> = frames(&out).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (MAGIC.len() as u64, first, message));
        assert_eq!(
            got[1],
            (
                (MAGIC.len() + first) as u64,
                second,
                Record::Removed { id: ID }
            )
        );
    }

    #[test]
    fn scanning_stops_at_a_torn_or_corrupt_frame() {
        let mut out = Vec::new();
        let one = Record::Message {
            id: ID,
            json: b"{}",
            message: b"m",
        };
        let first = encode(&one, &mut out);
        encode(&one, &mut out);
        for cut in first..out.len() {
            assert_eq!(frames(&out[..cut]).count(), 1, "cut at {cut}");
        }
        let mut corrupt = out.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(frames(&corrupt).count(), 1);
    }

    #[test]
    fn malformed_payloads_with_a_good_crc_are_refused() {
        let frame = |payload: &[u8]| {
            let mut out = (payload.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            out.extend_from_slice(payload);
            out
        };
        let mut bad_id = vec![KIND_REMOVED, 5];
        bad_id.extend_from_slice(b"../..");
        let mut unknown_kind = vec![9, ID.len() as u8];
        unknown_kind.extend_from_slice(ID.as_bytes());
        let mut json_too_long = vec![KIND_MESSAGE, ID.len() as u8];
        json_too_long.extend_from_slice(ID.as_bytes());
        json_too_long.extend_from_slice(&1000u32.to_le_bytes());
        for payload in [
            &[][..],
            &[KIND_MESSAGE],
            &bad_id,
            &unknown_kind,
            &json_too_long,
        ] {
            assert!(decode(&frame(payload)).is_none(), "{payload:?}");
        }
    }
}
