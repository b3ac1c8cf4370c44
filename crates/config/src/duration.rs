//! Durations: one written form everywhere (`500ms`, `30s`, `15m`, `2h`,
//! `5d`, or combined, `1h 30m`), read by one parser, `humantime`'s.
//!
//! Some keys were once bare integers with the unit in the name
//! (`idle_timeout_secs = 300`). [`renamed`] reads either spelling of such a
//! key, refuses both at once, and records a [`Deprecation`] for the old one.

use std::time::Duration;

use crate::error::{invalid, ConfigError, Deprecation};

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration such as 500ms, 30s, 15m, 2h or 5d")]
pub struct DurationError {
    pub text: String,
}

/// Parses `500ms`, `30s`, `15m`, `2h`, `5d` (and sums like `1h 30m`).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|_| DurationError {
        text: text.to_string(),
    })
}

/// `#[serde(with = "crate::duration::option")]` for `Option<Duration>`.
pub(crate) mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => super::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The unit an old integer key counted in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    Seconds,
    Millis,
}

/// A duration key and its deprecated integer spelling: the new one, the
/// old one converted (and noted), or neither; both is an error.
pub(crate) fn renamed(
    (new_key, new): (&'static str, Option<Duration>),
    (old_key, old): (&'static str, Option<u64>),
    unit: Unit,
    deprecations: &mut Vec<Deprecation>,
) -> Result<Option<Duration>, ConfigError> {
    match (new, old) {
        (Some(_), Some(_)) => Err(invalid(
            old_key,
            format!("give {new_key} or the deprecated {old_key}, not both"),
        )),
        (Some(d), None) => Ok(Some(d)),
        (None, None) => Ok(None),
        (None, Some(n)) => {
            let d = match unit {
                Unit::Seconds => Duration::from_secs(n),
                Unit::Millis => Duration::from_millis(n),
            };
            deprecations.push(Deprecation {
                old: old_key,
                new: new_key,
                value: humantime::format_duration(d).to_string(),
            });
            Ok(Some(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_form_for_every_duration() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("5d"), Ok(Duration::from_secs(5 * 86400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in ["300", "soon", "", "5 parsecs", "-1s"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn old_integer_keys_convert_and_are_noted() {
        let mut notes = Vec::new();
        let keys = ("limits.idle_timeout", None);
        let old = ("limits.idle_timeout_secs", Some(300));
        let d = renamed(keys, old, Unit::Seconds, &mut notes).unwrap();
        assert_eq!(d, Some(Duration::from_secs(300)));
        assert_eq!(
            notes[0].to_string(),
            "limits.idle_timeout_secs is deprecated; write limits.idle_timeout = \"5m\" instead"
        );
        let both = renamed(
            ("auth.failure_floor", Some(Duration::ZERO)),
            ("auth.failure_floor_ms", Some(5)),
            Unit::Millis,
            &mut notes,
        );
        assert!(both.is_err());
        assert_eq!(notes.len(), 1, "the new name alone is not noted");
    }
}
