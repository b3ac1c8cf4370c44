//! `[limits.sending]` (what an authenticated identity may send per window)
//! and `[containment]` (the signals that an account was taken, and what
//! the server does about each): raw form and validation.
//!
//! ```toml
//! [limits.sending]            # per user (and authz identity when it differs)
//! messages = ["100/m", "1000/h"]
//! recipients = ["5000/d"]
//! [limits.sending.tenant]     # per domain of the authz identity
//! messages = ["10000/h"]
//!
//! [containment]
//! webhook = "http://127.0.0.1:8080/portcullis"
//! webhook_secret = "a long random string"
//! [containment.many_networks]
//! max_networks = 3
//! window = "10m"
//! answer = "defer"
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::error::invalid;
use crate::ConfigError;

/// `count` per `window`: `500/h`, `20/10m`, `50M/d` (a count may carry
/// `k`, `M` or `G`, powers of 1024). The limits crate enforces it; this
/// crate only reads it (the server hands it over).
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

impl std::str::FromStr for Rate {
    type Err = RateError;
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let error = || RateError {
            text: text.to_string(),
        };
        let (count, window) = text.trim().split_once('/').ok_or_else(error)?;
        let count = count.trim();
        let (digits, shift) = match count.chars().last() {
            Some('k' | 'K') => (&count[..count.len() - 1], 10),
            Some('M') => (&count[..count.len() - 1], 20),
            Some('G') => (&count[..count.len() - 1], 30),
            _ => (count, 0),
        };
        let count = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
            .ok_or_else(error)?;
        let window = window.trim();
        // `h` alone is one hour; `10m` ten minutes.
        let window = match window.starts_with(|c: char| c.is_ascii_digit()) {
            true => window.to_string(),
            false => format!("1{window}"),
        };
        let window = crate::duration::parse(&window)
            .ok()
            .filter(|d| !d.is_zero() && window.ends_with(['s', 'm', 'h', 'd']))
            .ok_or_else(error)?;
        Ok(Rate { count, window })
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
}

/// Which signal (`[containment.<name>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    ManyNetworks,
    AfterGuessing,
    VolumeSpike,
    BadRecipients,
}

/// Many places: more than `max_networks` networks within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManyNetworks {
    pub max_networks: usize,
    pub window: Duration,
}

/// In after guessing: failures from the address or its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterGuessing {
    pub address_failures: u64,
    pub network_failures: u64,
}

/// Volume spike: the last hour above `factor` × the decayed baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeSpike {
    pub factor: f64,
    pub min_messages: u64,
    pub half_life: Duration,
}

/// Bad recipients: the share the next hop refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadRecipients {
    pub max_share: f64,
    pub min_recipients: u64,
    pub window: Duration,
}

/// Each signal's thresholds; `None` turns it off.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignalConfig {
    pub many_networks: Option<ManyNetworks>,
    pub after_guessing: Option<AfterGuessing>,
    pub volume_spike: Option<VolumeSpike>,
    pub bad_recipients: Option<BadRecipients>,
}

/// `[limits.sending]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSending {
    pub messages: Option<Vec<String>>,
    pub recipients: Option<Vec<String>>,
    pub bytes: Option<Vec<String>>,
    pub tenant: Option<RawRates>,
}

/// `[limits.sending.tenant]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRates {
    pub messages: Option<Vec<String>>,
    pub recipients: Option<Vec<String>>,
    pub bytes: Option<Vec<String>>,
}

/// Sending limits: per user (authn and authz identity) and per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sending {
    pub user: SendingLimits,
    pub tenant: SendingLimits,
}

impl Sending {
    /// No limit anywhere: nothing to count at MAIL.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.tenant.is_empty()
    }
}

fn rates(key: &str, list: Option<Vec<String>>) -> Result<Vec<Rate>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .map(|text| {
            text.parse::<Rate>()
                .map_err(|e| invalid(key, e.to_string()))
        })
        .collect()
}

fn limits(
    prefix: &str,
    messages: Option<Vec<String>>,
    recipients: Option<Vec<String>>,
    bytes: Option<Vec<String>>,
) -> Result<SendingLimits, ConfigError> {
    Ok(SendingLimits {
        messages: rates(&format!("{prefix}.messages"), messages)?,
        recipients: rates(&format!("{prefix}.recipients"), recipients)?,
        bytes: rates(&format!("{prefix}.bytes"), bytes)?,
    })
}

pub(crate) fn validate_sending(raw: Option<RawSending>) -> Result<Sending, ConfigError> {
    let raw = raw.unwrap_or_default();
    let t = raw.tenant.unwrap_or_default();
    Ok(Sending {
        user: limits("limits.sending", raw.messages, raw.recipients, raw.bytes)?,
        tenant: limits("limits.sending.tenant", t.messages, t.recipients, t.bytes)?,
    })
}

/// What the server does when a signal fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    /// A log line and a metric only.
    Log,
    /// New messages are accepted (`250`) but held in the spool, not
    /// delivered, until released.
    Hold,
    /// New messages get `451 4.7.1`.
    Defer,
    /// AUTH answers `535 5.7.8`; open sessions get `421` at their next
    /// command.
    Suspend,
}

impl Answer {
    pub fn name(self) -> &'static str {
        match self {
            Answer::Log => "log",
            Answer::Hold => "hold",
            Answer::Defer => "defer",
            Answer::Suspend => "suspend",
        }
    }
}

/// `[containment.<signal>]` as written: every signal's keys, each signal
/// reading its own (unknown keys for a signal are refused in validation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    pub enabled: Option<bool>,
    pub answer: Option<String>,
    pub max_networks: Option<usize>,
    pub window: Option<String>,
    pub address_failures: Option<u64>,
    pub network_failures: Option<u64>,
    pub factor: Option<f64>,
    pub min_messages: Option<u64>,
    pub half_life: Option<String>,
    pub max_share: Option<f64>,
    pub min_recipients: Option<u64>,
}

/// `[containment]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainment {
    pub webhook: Option<String>,
    pub webhook_secret: Option<String>,
    /// An address that logged in as the identity at least this long before
    /// a signal keeps sending through `hold`, `defer` and `suspend`.
    pub spare_known_after: Option<String>,
    /// How long an answer from a signal lasts (`suspend` lasts until
    /// `portcullis user resume`).
    pub answer_for: Option<String>,
    /// Login history older than this is pruned.
    pub history_for: Option<String>,
    pub many_networks: Option<RawSignal>,
    pub after_guessing: Option<RawSignal>,
    pub volume_spike: Option<RawSignal>,
    pub bad_recipients: Option<RawSignal>,
}

/// The validated `[containment]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Containment {
    pub signals: SignalConfig,
    /// The answer chosen for each signal that is on.
    pub answers: Vec<(Signal, Answer)>,
    /// Where answers are POSTed, and the HMAC key that signs them.
    pub webhook: Option<String>,
    pub webhook_secret: Option<String>,
    pub spare_known_after: Duration,
    pub answer_for: Duration,
    pub history_for: Duration,
}

impl Default for Containment {
    fn default() -> Self {
        Containment {
            signals: SignalConfig::default(),
            answers: Vec::new(),
            webhook: None,
            webhook_secret: None,
            spare_known_after: Duration::from_secs(3600),
            answer_for: Duration::from_secs(3600),
            history_for: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Containment {
    pub fn answer(&self, signal: Signal) -> Option<Answer> {
        self.answers
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, a)| *a)
    }
}

fn duration(key: &str, value: Option<&String>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => crate::duration::parse(text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| invalid(key, format!("{text:?} is not a duration like 10m or 7d"))),
    }
}

fn answer(key: &str, text: Option<&str>) -> Result<Answer, ConfigError> {
    match text.unwrap_or("log") {
        "log" => Ok(Answer::Log),
        "hold" => Ok(Answer::Hold),
        "defer" => Ok(Answer::Defer),
        "suspend" => Ok(Answer::Suspend),
        other => Err(invalid(
            key,
            format!("{other:?}: expected log, hold, defer or suspend"),
        )),
    }
}

/// Refuses keys that belong to another signal, so a typo is not ignored.
fn on(r: &Option<RawSignal>) -> Option<&RawSignal> {
    r.as_ref().filter(|r| r.enabled != Some(false))
}

fn only(signal: &str, raw: &RawSignal, allowed: &[&str]) -> Result<(), ConfigError> {
    let set = [
        ("max_networks", raw.max_networks.is_some()),
        ("window", raw.window.is_some()),
        ("address_failures", raw.address_failures.is_some()),
        ("network_failures", raw.network_failures.is_some()),
        ("factor", raw.factor.is_some()),
        ("min_messages", raw.min_messages.is_some()),
        ("half_life", raw.half_life.is_some()),
        ("max_share", raw.max_share.is_some()),
        ("min_recipients", raw.min_recipients.is_some()),
    ];
    match set.iter().find(|(k, on)| *on && !allowed.contains(k)) {
        Some((k, _)) => Err(invalid(
            format!("containment.{signal}.{k}"),
            "not a key of this signal",
        )),
        None => Ok(()),
    }
}

pub(crate) fn validate(raw: Option<RawContainment>) -> Result<Containment, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Containment::default());
    };
    let d = Containment::default();
    let mut c = Containment {
        webhook: raw.webhook.clone(),
        webhook_secret: raw.webhook_secret.clone(),
        spare_known_after: duration(
            "containment.spare_known_after",
            raw.spare_known_after.as_ref(),
            d.spare_known_after,
        )?,
        answer_for: duration(
            "containment.answer_for",
            raw.answer_for.as_ref(),
            d.answer_for,
        )?,
        history_for: duration(
            "containment.history_for",
            raw.history_for.as_ref(),
            d.history_for,
        )?,
        ..d
    };
    if let Some(url) = &c.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("containment.webhook", "an http:// or https:// URL"));
        }
    }
    if let Some(r) = on(&raw.many_networks) {
        only("many_networks", r, &["max_networks", "window"])?;
        c.signals.many_networks = Some(ManyNetworks {
            max_networks: r.max_networks.unwrap_or(3),
            window: duration(
                "containment.many_networks.window",
                r.window.as_ref(),
                Duration::from_secs(600),
            )?,
        });
        let a = answer("containment.many_networks.answer", r.answer.as_deref())?;
        c.answers.push((Signal::ManyNetworks, a));
    }
    if let Some(r) = on(&raw.after_guessing) {
        only(
            "after_guessing",
            r,
            &["address_failures", "network_failures"],
        )?;
        c.signals.after_guessing = Some(AfterGuessing {
            address_failures: r.address_failures.unwrap_or(3),
            network_failures: r.network_failures.unwrap_or(10),
        });
        let a = answer("containment.after_guessing.answer", r.answer.as_deref())?;
        c.answers.push((Signal::AfterGuessing, a));
    }
    if let Some(r) = on(&raw.volume_spike) {
        only("volume_spike", r, &["factor", "min_messages", "half_life"])?;
        let factor = r.factor.unwrap_or(5.0);
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(invalid(
                "containment.volume_spike.factor",
                "a number of at least 1",
            ));
        }
        c.signals.volume_spike = Some(VolumeSpike {
            factor,
            min_messages: r.min_messages.unwrap_or(100),
            half_life: duration(
                "containment.volume_spike.half_life",
                r.half_life.as_ref(),
                Duration::from_secs(7 * 24 * 3600),
            )?,
        });
        let a = answer("containment.volume_spike.answer", r.answer.as_deref())?;
        c.answers.push((Signal::VolumeSpike, a));
    }
    if let Some(r) = on(&raw.bad_recipients) {
        only(
            "bad_recipients",
            r,
            &["max_share", "min_recipients", "window"],
        )?;
        let share = r.max_share.unwrap_or(0.3);
        if !(0.0..1.0).contains(&share) {
            return Err(invalid(
                "containment.bad_recipients.max_share",
                "from 0 to below 1",
            ));
        }
        c.signals.bad_recipients = Some(BadRecipients {
            max_share: share,
            min_recipients: r.min_recipients.unwrap_or(20),
            window: duration(
                "containment.bad_recipients.window",
                r.window.as_ref(),
                Duration::from_secs(3600),
            )?,
        });
        let a = answer("containment.bad_recipients.answer", r.answer.as_deref())?;
        c.answers.push((Signal::BadRecipients, a));
    }
    Ok(c)
}
