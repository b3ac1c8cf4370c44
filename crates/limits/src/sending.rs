//! Sending limits per identity: how many messages, recipients and bytes an
//! authenticated identity may send per window, several windows at once.
//!
//! A password that leaked logs in correctly, so the guessing defence never
//! sees it; what it does next (send a lot) is what these limits bound. They
//! apply to the authentication identity, to the authorization identity when
//! it differs, and to the tenant (the domain of the authorization
//! identity), each with its own limits.
//!
//! The decision is pure ([`decide`]): quotas and their current counts in,
//! the first quota that the new amount would pass out. The backends run it
//! atomically: the memory backend under its mutex, Redis in one server-side
//! Lua script, so a message costs one round trip whatever the number of
//! windows, and two instances sharing Redis cannot both take the last slot.
//!
//! Windows slide as the failure counts do (two fixed buckets weighted by
//! how much of the previous one lies in the window), so both backends and
//! both kinds of limits count alike.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::memory::estimate;
use crate::Timestamp;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    Messages,
    Recipients,
    Bytes,
}

impl Quantity {
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Messages => "messages",
            Quantity::Recipients => "recipients",
            Quantity::Bytes => "bytes",
        }
    }
}

/// Whose sending is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The authentication identity (who proved the password).
    Authn,
    /// The authorization identity, when it differs from the authentication one.
    Authz,
    /// The tenant: the domain of the authorization identity.
    Tenant,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Authn => "user",
            Scope::Authz => "authz",
            Scope::Tenant => "tenant",
        }
    }
}

/// `count` per `window`, written `500/h`, `20/10m`, `50M/d` (bytes may
/// carry `k`, `M` or `G`, powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub window: Duration,
}

/// A rate that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a rate like 500/h, 20/10m or 50M/d")]
pub struct RateError {
    pub text: String,
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let error = || RateError {
            text: text.to_string(),
        };
        let (count, window) = text.trim().split_once('/').ok_or_else(error)?;
        let (digits, multiplier) = match count.trim().strip_suffix(['k', 'K', 'M', 'G']) {
            Some(digits) => {
                let unit = count.trim().chars().last().unwrap_or('k');
                let shift = match unit {
                    'k' | 'K' => 10,
                    'M' => 20,
                    _ => 30,
                };
                (digits, 1u64 << shift)
            }
            None => (count.trim(), 1),
        };
        let count = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(error)?;
        let window = window.trim();
        let split = window
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(error)?;
        let (n, unit) = window.split_at(split);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| error())?
        };
        let unit_ms: u64 = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(error()),
        };
        let ms = n
            .checked_mul(unit_ms)
            .filter(|ms| *ms > 0)
            .ok_or_else(error)?;
        Ok(Rate {
            count,
            window: Duration::from_millis(ms),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.window.as_millis() as u64;
        let (n, unit) = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m")]
            .into_iter()
            .find(|(unit, _)| ms % unit == 0)
            .map_or((ms / 1000, "s"), |(u, name)| (ms / u, name));
        match n {
            1 => write!(f, "{}/{unit}", self.count),
            n => write!(f, "{}/{n}{unit}", self.count),
        }
    }
}

/// The rates for one scope; an empty list is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendingLimits {
    pub messages: Vec<Rate>,
    pub recipients: Vec<Rate>,
    pub bytes: Vec<Rate>,
}

impl SendingLimits {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.recipients.is_empty() && self.bytes.is_empty()
    }

    /// These limits with each quantity `other` sets replacing ours (a
    /// per-user override replaces the default for what it names only).
    pub fn overridden_by(&self, other: &SendingLimits) -> SendingLimits {
        let pick = |ours: &Vec<Rate>, theirs: &Vec<Rate>| match theirs.is_empty() {
            true => ours.clone(),
            false => theirs.clone(),
        };
        SendingLimits {
            messages: pick(&self.messages, &other.messages),
            recipients: pick(&self.recipients, &other.recipients),
            bytes: pick(&self.bytes, &other.bytes),
        }
    }

    pub fn rates(&self, quantity: Quantity) -> &[Rate] {
        match quantity {
            Quantity::Messages => &self.messages,
            Quantity::Recipients => &self.recipients,
            Quantity::Bytes => &self.bytes,
        }
    }
}

/// One limit on one counter: the new `amount` is refused when the count
/// over `window` plus it would pass `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub key: String,
    pub window: Duration,
    pub limit: u64,
    pub amount: u64,
}

impl Quota {
    /// A counter that is only added to (no limit).
    pub fn add(key: String, window: Duration, amount: u64) -> Quota {
        Quota {
            key,
            window,
            limit: u64::MAX,
            amount,
        }
    }
}

/// What a backend answered for a list of quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The first quota that refused; then nothing was added.
    pub refused: Option<usize>,
    /// Each quota's count over its window, after adding (or not).
    pub counts: Vec<u64>,
}

/// The pure decision: given each quota's current and previous bucket
/// count, the index of the first quota the new amount would pass.
pub fn decide(quotas: &[Quota], buckets: &[(u64, u64)], now: Timestamp) -> Option<usize> {
    quotas.iter().zip(buckets).position(|(q, (cur, prev))| {
        let used = estimate(*cur, *prev, q.window, now);
        q.amount > 0 && used.saturating_add(q.amount) > q.limit
            || q.amount == 0 && q.limit != u64::MAX && used >= q.limit
    })
}

/// One named limit, as it appears in the reply and the log:
/// `user alice messages 500/h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLimit {
    pub scope: Scope,
    pub who: String,
    pub quantity: Quantity,
    pub rate: Rate,
}

impl fmt::Display for NamedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.scope.name(),
            self.who,
            self.quantity.name(),
            self.rate
        )
    }
}

/// The counter key of one scope, quantity and window.
pub fn counter_key(scope: Scope, who: &str, quantity: Quantity, window: Duration) -> String {
    format!(
        "send:{}:{who}:{}:{}",
        scope.name(),
        quantity.name(),
        window.as_millis()
    )
}

/// The identities a message is counted under, each with its limits.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    pub list: Vec<(Scope, String, SendingLimits)>,
}

impl Subjects {
    /// Quotas checked at MAIL: one more message (and `size` bytes if
    /// declared) must fit; recipients must not be used up already.
    pub fn at_mail(&self, size: u64) -> (Vec<Quota>, Vec<NamedLimit>) {
        let mut quotas = Vec::new();
        let mut names = Vec::new();
        for (scope, who, limits) in &self.list {
            for quantity in [Quantity::Messages, Quantity::Recipients, Quantity::Bytes] {
                let amount = match quantity {
                    Quantity::Messages => 1,
                    Quantity::Recipients => 0,
                    Quantity::Bytes => size,
                };
                for rate in limits.rates(quantity) {
                    quotas.push(Quota {
                        key: counter_key(*scope, who, quantity, rate.window),
                        window: rate.window,
                        limit: rate.count,
                        amount,
                    });
                    names.push(NamedLimit {
                        scope: *scope,
                        who: who.clone(),
                        quantity,
                        rate: *rate,
                    });
                }
            }
        }
        (quotas, names)
    }

    /// Counters added after a message was accepted: its recipients and
    /// bytes (bytes beyond the declared size, which MAIL counted).
    pub fn after_message(&self, recipients: u64, extra_bytes: u64) -> Vec<Quota> {
        let mut quotas = Vec::new();
        for (scope, who, limits) in &self.list {
            for (quantity, amount) in [
                (Quantity::Recipients, recipients),
                (Quantity::Bytes, extra_bytes),
            ] {
                if amount == 0 {
                    continue;
                }
                for rate in limits.rates(quantity) {
                    let key = counter_key(*scope, who, quantity, rate.window);
                    quotas.push(Quota::add(key, rate.window, amount));
                }
            }
        }
        quotas
    }
}

/// The counts MAIL saw, kept for the transaction so that each RCPT is
/// checked without another round trip.
#[derive(Debug, Clone, Default)]
pub struct Allowance {
    /// For each recipients limit: the limit's name and how many more
    /// recipients it allows.
    pub recipients_left: Vec<(NamedLimit, u64)>,
}

impl Allowance {
    /// From the quotas MAIL checked and their counts.
    pub fn from_mail(quotas: &[Quota], names: &[NamedLimit], counts: &[u64]) -> Allowance {
        let recipients_left = quotas
            .iter()
            .zip(names)
            .zip(counts)
            .filter(|((_, n), _)| n.quantity == Quantity::Recipients)
            .map(|((q, n), used)| (n.clone(), q.limit.saturating_sub(*used)))
            .collect();
        Allowance { recipients_left }
    }

    /// The limit the `n`th recipient (1-based) of this transaction would
    /// pass, if any.
    pub fn recipient(&self, n: u64) -> Option<&NamedLimit> {
        self.recipients_left
            .iter()
            .find(|(_, left)| n > *left)
            .map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        text.parse().expect("valid rate")
    }

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(rate("500/h").count, 500);
        assert_eq!(rate("500/h").window, Duration::from_secs(3600));
        assert_eq!(rate("20/10m").window, Duration::from_secs(600));
        assert_eq!(rate("50M/d").count, 50 << 20);
        assert_eq!(rate("2000/d").to_string(), "2000/d");
        assert_eq!(rate("20/10m").to_string(), "20/10m");
        for bad in ["500", "500/", "x/h", "5/0h", "5/h2", "5/y"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_quota_passed_is_named_and_nothing_else_counts() {
        let q = |limit, amount| Quota {
            key: "k".into(),
            window: Duration::from_secs(60),
            limit,
            amount,
        };
        let now = Timestamp(60_000);
        assert_eq!(decide(&[q(10, 1), q(5, 1)], &[(3, 0), (4, 0)], now), None);
        assert_eq!(
            decide(&[q(10, 1), q(5, 1)], &[(3, 0), (5, 0)], now),
            Some(1)
        );
        // Recipients at MAIL: used up refuses, one left passes.
        assert_eq!(decide(&[q(5, 0)], &[(5, 0)], now), Some(0));
        assert_eq!(decide(&[q(5, 0)], &[(4, 0)], now), None);
        // The previous bucket counts for what of it is still in the window.
        let half = Timestamp(90_000);
        assert_eq!(decide(&[q(10, 1)], &[(5, 10)], half), Some(0));
        assert_eq!(decide(&[q(10, 1)], &[(4, 10)], half), None);
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let defaults = SendingLimits {
            messages: vec![rate("100/h")],
            recipients: vec![rate("1000/d")],
            bytes: vec![],
        };
        let user = SendingLimits {
            messages: vec![rate("500/h")],
            ..Default::default()
        };
        let merged = defaults.overridden_by(&user);
        assert_eq!(merged.messages, vec![rate("500/h")]);
        assert_eq!(merged.recipients, vec![rate("1000/d")]);
    }

    #[test]
    fn recipients_are_checked_against_what_mail_saw() {
        let limits = SendingLimits {
            recipients: vec![rate("10/h")],
            ..Default::default()
        };
        let subjects = Subjects {
            list: vec![(Scope::Authn, "alice".into(), limits)],
        };
        let (quotas, names) = subjects.at_mail(0);
        assert_eq!(names[0].to_string(), "user alice recipients 10/h");
        let allowance = Allowance::from_mail(&quotas, &names, &[8]);
        assert!(allowance.recipient(2).is_none());
        assert_eq!(allowance.recipient(3), Some(&names[0]));
    }
}
