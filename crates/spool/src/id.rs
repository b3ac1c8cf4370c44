//! Message ids: sortable by arrival, safe to use as file names.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::SpoolError;

/// Hex digits of the time part (microseconds since the Unix epoch).
const TIME_DIGITS: usize = 16;
/// Hex digits of the random part.
const RANDOM_DIGITS: usize = 8;
/// Total length: time, `-`, random.
const ID_LEN: usize = TIME_DIGITS + 1 + RANDOM_DIGITS;

/// A [`MessageId`] as integers: microseconds, random part.
pub(crate) type IdKey = (u64, u32);

/// The id of a spooled message, e.g. `00062f1c3a9b2e10-9f03a1c7`.
///
/// Sixteen lowercase hex digits of microseconds since the Unix epoch, a `-`,
/// and eight random lowercase hex digits. The fixed width makes string order
/// equal arrival order, and the strict shape (checked by [`FromStr`]) means an
/// id can never name a path outside the queue directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// The id as a string (also its file stem in the queue).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the message was spooled, in microseconds since the Unix epoch
    /// (the time part of the id; the delivery stage ages messages by it).
    pub fn spooled_at_micros(&self) -> u64 {
        // Invariant: `FromStr` and `new` only make ids whose first
        // TIME_DIGITS characters are lowercase hex.
        hex_value(&self.0.as_bytes()[..TIME_DIGITS])
    }

    /// The id as two integers (time, random part), which order as the
    /// strings do: 16 bytes in a map instead of a 25-byte heap string.
    pub(crate) fn key(&self) -> IdKey {
        // Invariant: `FromStr` and `new` only make ids whose parts are
        // lowercase hex of the fixed widths.
        // Eight hex digits: at most u32::MAX.
        let random = hex_value(&self.0.as_bytes()[TIME_DIGITS + 1..]) as u32;
        (self.spooled_at_micros(), random)
    }

    /// The id a [`MessageId::key`] came from.
    pub(crate) fn from_key((micros, random): IdKey) -> Self {
        Self::of_parts(micros, random.to_be_bytes())
    }

    /// A fresh id whose time part is `micros`.
    pub(crate) fn new(micros: u64) -> Self {
        Self::of_parts(micros, rand::random())
    }

    /// `{micros:016x}-{random:08x}`, written by `hex` rather than `format!`
    /// (every message gets an id; about 1 300 instructions through `fmt`).
    fn of_parts(micros: u64, random: [u8; RANDOM_DIGITS / 2]) -> Self {
        let mut id = [b'-'; ID_LEN];
        // Invariant: the halves are exactly twice the bytes' lengths.
        hex::encode_to_slice(micros.to_be_bytes(), &mut id[..TIME_DIGITS])
            .expect("16 hex digits for 8 bytes");
        hex::encode_to_slice(random, &mut id[TIME_DIGITS + 1..]).expect("8 hex digits for 4 bytes");
        // Invariant: hex digits and `-` are ASCII.
        MessageId(String::from_utf8(id.to_vec()).expect("ASCII"))
    }
}

/// The value of at most sixteen lowercase hex digits, which an id's parts
/// always are. A digit's value is its low nibble, plus 9 for a letter (bit 6
/// set): a few instructions a digit, where `from_str_radix` spent about
/// 400 on an id, once for each message stored.
fn hex_value(digits: &[u8]) -> u64 {
    debug_assert!(digits.len() <= 16 && digits.iter().all(u8::is_ascii_hexdigit));
    digits.iter().fold(0, |value, &digit| {
        (value << 4) | u64::from((digit & 0x0f) + 9 * (digit >> 6))
    })
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MessageId {
    type Err = SpoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        let bytes = s.as_bytes();
        let well_formed = bytes.len() == ID_LEN
            && bytes[..TIME_DIGITS].iter().all(lower_hex)
            && bytes[TIME_DIGITS] == b'-'
            && bytes[TIME_DIGITS + 1..].iter().all(lower_hex);
        if well_formed {
            Ok(MessageId(s.to_owned()))
        } else {
            Err(SpoolError::InvalidId(s.to_owned()))
        }
    }
}

/// Hands out strictly increasing timestamps, so that ids made by one spool
/// sort in the order `store` was called even within one microsecond or if the
/// wall clock steps back.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// Microseconds since the epoch, bumped past the last value handed out.
    pub(crate) fn next_micros(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = MessageId::new(0x62f1c3a9b2e10);
        assert_eq!(id.as_str().len(), ID_LEN);
        assert!(id.as_str().starts_with("00062f1c3a9b2e10-"));
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        assert_eq!(MessageId::from_key(id.key()), id);
        let key = (0x0123_4567_89ab_cdef, 0x00c0_ffee);
        assert_eq!(
            MessageId::from_key(key).as_str(),
            format!("{:016x}-{:08x}", key.0, key.1)
        );
    }

    #[test]
    fn parse_rejects_odd_shapes() {
        let bad = [
            "",
            "../x",
            "../../etc/passwd",
            "00062f1c3a9b2e10-9f03a1c",    // short random part
            "00062f1c3a9b2e10-9f03a1c77",  // long random part
            "00062F1C3A9B2E10-9F03A1C7",   // uppercase
            "00062f1c3a9b2e10_9f03a1c7",   // wrong separator
            "00062f1c3a9b2e1g-9f03a1c7",   // not hex
            "0062f1c3a9b2e10-09f03a1c7",   // separator in the wrong place
            "00062f1c3a9b2e10-9f03a1c7\n", // trailing newline
            "/0062f1c3a9b2e10-9f03a1c7",
            "00062f1c3a9b2e10-9f03/1c7",
            "00062f1c3a9b2e10-9f03a1c7.eml",
            "00062f1c3a9b2e1é-9f03a1c",
        ];
        for s in bad {
            assert!(
                matches!(s.parse::<MessageId>(), Err(SpoolError::InvalidId(_))),
                "{s:?} should be rejected"
            );
        }
        assert!("00062f1c3a9b2e10-9f03a1c7".parse::<MessageId>().is_ok());
    }

    #[test]
    fn hex_values_are_those_of_from_str_radix() {
        for digits in [
            "0",
            "9",
            "a",
            "f",
            "0123456789abcdef",
            "ffffffffffffffff",
            "00062f1c3a9b2e10",
        ] {
            assert_eq!(
                super::hex_value(digits.as_bytes()),
                u64::from_str_radix(digits, 16).unwrap(),
                "{digits}"
            );
        }
        for _ in 0..1000 {
            let n: u64 = rand::random();
            assert_eq!(super::hex_value(format!("{n:016x}").as_bytes()), n);
        }
    }

    #[test]
    fn keys_round_trip_and_order_like_the_strings() {
        let ids: Vec<MessageId> = [
            "00062f1c3a9b2e10-9f03a1c7",
            "00062f1c3a9b2e10-0000000a",
            "00062f1c3a9b2e11-00000000",
            "ffffffffffffffff-ffffffff",
            "0000000000000000-00000000",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for id in &ids {
            assert_eq!(&MessageId::from_key(id.key()), id);
        }
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.key().cmp(&b.key()), "{a} {b}");
            }
        }
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let clock = Clock::default();
        let mut prev = clock.next_micros();
        for _ in 0..10_000 {
            let next = clock.next_micros();
            assert!(next > prev);
            prev = next;
        }
    }
}
