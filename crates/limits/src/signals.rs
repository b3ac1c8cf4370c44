//! Signals that an account was taken, computed per identity from facts the
//! server already has: where it logged in from, what it sent, whether the
//! address had just been guessing.
//!
//! A leaked password logs in correctly; what gives it away is behaviour
//! the owner does not show: logins from many networks at once, a login
//! from an address that was failing a moment ago (a spray that hit), a
//! sending rate far above the identity's own baseline, many recipients
//! the next hop refuses. Each detector is pure (time goes in as a
//! [`Timestamp`]) and bounded in memory; each can be off (`None` in
//! [`SignalConfig`]). What to do about a signal is the caller's choice.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use crate::{network_of, Timestamp};

/// Logins remembered per identity for the networks signal.
const MAX_LOGINS: usize = 256;
/// Minute buckets of the last hour's sending.
const MINUTES: usize = 60;

/// Which signal fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    ManyNetworks,
    AfterGuessing,
    VolumeSpike,
    BadRecipients,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Signal::ManyNetworks,
        Signal::AfterGuessing,
        Signal::VolumeSpike,
        Signal::BadRecipients,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::ManyNetworks => "many_networks",
            Signal::AfterGuessing => "after_guessing",
            Signal::VolumeSpike => "volume_spike",
            Signal::BadRecipients => "bad_recipients",
        }
    }
}

/// Successful logins from more than `max_networks` distinct networks
/// (/24, /64) within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManyNetworks {
    pub max_networks: usize,
    pub window: Duration,
}

/// A successful login from an address with at least `address_failures`
/// recent failures, or a network with at least `network_failures` (for
/// any user: the guessing counts of [`crate::Limiter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterGuessing {
    pub address_failures: u64,
    pub network_failures: u64,
}

/// Messages in the last hour above `factor` times the identity's decayed
/// hourly rate, and above `min_messages` (so that a quiet account's first
/// busy hour is not a spike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeSpike {
    pub factor: f64,
    pub min_messages: u64,
    /// The baseline forgets with this half-life.
    pub half_life: Duration,
}

/// At least `min_recipients` delivery results in `window`, and a share of
/// them refused by the next hop above `max_share`.
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

/// Why a signal fired: what the webhook, the log and the CLI show.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub signal: Signal,
    /// The addresses involved (the login's, or the networks' latest).
    pub addresses: Vec<IpAddr>,
    /// The count that crossed the threshold, and the threshold.
    pub count: u64,
    pub threshold: u64,
    /// The span of the evidence.
    pub first: Timestamp,
    pub last: Timestamp,
}

/// One login, as the networks signal keeps it.
#[derive(Debug, Clone)]
struct Login {
    ip: IpAddr,
    network: String,
    at: Timestamp,
}

/// What is known of one identity. Bounded: [`MAX_LOGINS`] logins, an
/// hour of minute buckets, a window of delivery results in two counts.
#[derive(Debug, Clone)]
pub struct IdentityWatch {
    logins: VecDeque<Login>,
    /// Messages per minute over the last hour, indexed by minute % 60.
    minutes: [(u64, u64); MINUTES],
    /// Decayed messages per hour, and when it was last decayed.
    baseline: f64,
    baseline_at: Option<Timestamp>,
    /// Delivery results in the current window: (since, accepted, refused).
    results: (Timestamp, u64, u64),
}

impl Default for IdentityWatch {
    fn default() -> Self {
        IdentityWatch {
            logins: VecDeque::new(),
            minutes: [(u64::MAX, 0); MINUTES],
            baseline: 0.0,
            baseline_at: None,
            results: (Timestamp(0), 0, 0),
        }
    }
}

impl IdentityWatch {
    /// A successful login from `ip`; `failures` are the recent failure
    /// counts of its address and network.
    pub fn login(
        &mut self,
        config: &SignalConfig,
        ip: IpAddr,
        failures: (u64, u64),
        now: Timestamp,
    ) -> Vec<Evidence> {
        let mut fired = Vec::new();
        if let Some(g) = &config.after_guessing {
            let (address, network) = failures;
            let address_hit = g.address_failures > 0 && address >= g.address_failures;
            let network_hit = g.network_failures > 0 && network >= g.network_failures;
            if address_hit || network_hit {
                let (count, threshold) = match address_hit {
                    true => (address, g.address_failures),
                    false => (network, g.network_failures),
                };
                fired.push(Evidence {
                    signal: Signal::AfterGuessing,
                    addresses: vec![ip],
                    count,
                    threshold,
                    first: now,
                    last: now,
                });
            }
        }
        self.logins.push_back(Login {
            ip,
            network: network_of(ip),
            at: now,
        });
        while self.logins.len() > MAX_LOGINS {
            self.logins.pop_front();
        }
        if let Some(m) = &config.many_networks {
            fired.extend(self.many_networks(m, now));
        }
        fired
    }

    fn many_networks(&self, m: &ManyNetworks, now: Timestamp) -> Option<Evidence> {
        let since = now.saturating_sub(m.window);
        let mut networks: Vec<(&str, IpAddr)> = Vec::new();
        let mut first = now;
        for login in self.logins.iter().filter(|l| l.at >= since) {
            first = first.min(login.at);
            match networks
                .iter_mut()
                .find(|(n, _)| *n == login.network.as_str())
            {
                Some(entry) => entry.1 = login.ip,
                None => networks.push((login.network.as_str(), login.ip)),
            }
        }
        (networks.len() > m.max_networks).then(|| Evidence {
            signal: Signal::ManyNetworks,
            addresses: networks.iter().map(|(_, ip)| *ip).collect(),
            count: networks.len() as u64,
            threshold: m.max_networks as u64,
            first,
            last: now,
        })
    }

    /// The addresses of the remembered logins, each once.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut list: Vec<IpAddr> = self.logins.iter().map(|l| l.ip).collect();
        list.sort();
        list.dedup();
        list
    }

    /// Whether `ip` logged in as this identity before `before`.
    pub fn known_before(&self, ip: IpAddr, before: Timestamp) -> bool {
        self.logins.iter().any(|l| l.ip == ip && l.at < before)
    }

    /// Messages in the hour up to `now`.
    pub fn last_hour(&self, now: Timestamp) -> u64 {
        let minute = now.millis() / 60_000;
        self.minutes
            .iter()
            .filter(|(m, _)| *m != u64::MAX && *m + (MINUTES as u64) > minute && *m <= minute)
            .map(|(_, n)| n)
            .sum()
    }

    /// The decayed hourly rate (the identity's own baseline).
    pub fn baseline(&self) -> f64 {
        self.baseline
    }

    /// One message accepted from this identity.
    pub fn message(&mut self, config: &SignalConfig, now: Timestamp) -> Option<Evidence> {
        let minute = now.millis() / 60_000;
        let slot = &mut self.minutes[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        let v = config.volume_spike.as_ref()?;
        // The baseline before this message, decayed to now; then this
        // message folds in (a rate per hour: each message adds 1/τ hours).
        let tau_h = v.half_life.as_secs_f64() / 3600.0 / std::f64::consts::LN_2;
        if let Some(at) = self.baseline_at {
            let dt_h = now.millis().saturating_sub(at.millis()) as f64 / 3_600_000.0;
            self.baseline *= (-dt_h / tau_h.max(1e-9)).exp();
        }
        let baseline = self.baseline;
        self.baseline += 1.0 / tau_h.max(1e-9);
        self.baseline_at = Some(now);
        let sent = self.last_hour(now);
        let threshold = (v.factor * baseline).max(v.min_messages as f64).ceil() as u64;
        (sent > threshold).then(|| Evidence {
            signal: Signal::VolumeSpike,
            addresses: Vec::new(),
            count: sent,
            threshold,
            first: now.saturating_sub(Duration::from_secs(3600)),
            last: now,
        })
    }

    /// Whether the baseline was ever set or fed (a watch just created is
    /// seeded from the history first).
    pub fn has_baseline(&self) -> bool {
        self.baseline_at.is_some()
    }

    /// Starts the baseline at `per_hour` (from the sending history).
    pub fn seed_baseline(&mut self, per_hour: f64, now: Timestamp) {
        self.baseline = per_hour;
        self.baseline_at = Some(now);
    }

    /// Delivery results for this identity's recipients: how many the next
    /// hop accepted and refused (permanently, as unknown or refused).
    pub fn delivered(
        &mut self,
        config: &SignalConfig,
        accepted: u64,
        refused: u64,
        now: Timestamp,
    ) -> Option<Evidence> {
        let b = config.bad_recipients.as_ref()?;
        if now.saturating_sub(b.window) > self.results.0 {
            self.results = (now, 0, 0);
        }
        self.results.1 += accepted;
        self.results.2 += refused;
        let (since, ok, bad) = self.results;
        let total = ok + bad;
        let share = bad as f64 / total.max(1) as f64;
        (total >= b.min_recipients && share > b.max_share).then(|| Evidence {
            signal: Signal::BadRecipients,
            addresses: Vec::new(),
            count: bad,
            threshold: (b.max_share * total as f64).floor() as u64,
            first: since,
            last: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 51, n, 7])
    }

    #[test]
    fn many_networks_fires_past_the_count_within_the_window() {
        let config = SignalConfig {
            many_networks: Some(ManyNetworks {
                max_networks: 2,
                window: Duration::from_secs(600),
            }),
            ..Default::default()
        };
        let mut w = IdentityWatch::default();
        assert!(w.login(&config, ip(1), (0, 0), T0).is_empty());
        // Same /24 again: still one network.
        let same_net = IpAddr::from([198, 51, 1, 9]);
        assert!(w.login(&config, same_net, (0, 0), T0).is_empty());
        assert!(w.login(&config, ip(2), (0, 0), T0).is_empty());
        let fired = w.login(&config, ip(3), (0, 0), T0 + Duration::from_secs(5));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].signal, Signal::ManyNetworks);
        assert_eq!((fired[0].count, fired[0].threshold), (3, 2));
        // Outside the window the old networks no longer count.
        let later = T0 + Duration::from_secs(3600);
        assert!(w.login(&config, ip(4), (0, 0), later).is_empty());
    }

    #[test]
    fn after_guessing_looks_at_the_address_and_network_failures() {
        let config = SignalConfig {
            after_guessing: Some(AfterGuessing {
                address_failures: 3,
                network_failures: 10,
            }),
            ..Default::default()
        };
        let mut w = IdentityWatch::default();
        assert!(w.login(&config, ip(1), (2, 9), T0).is_empty());
        let fired = w.login(&config, ip(1), (3, 3), T0);
        assert_eq!(
            (fired[0].signal, fired[0].count),
            (Signal::AfterGuessing, 3)
        );
        let fired = w.login(&config, ip(1), (0, 12), T0);
        assert_eq!((fired[0].count, fired[0].threshold), (12, 10));
        assert!(w
            .login(&SignalConfig::default(), ip(1), (99, 99), T0)
            .is_empty());
    }

    #[test]
    fn a_spike_is_measured_against_the_identitys_own_baseline() {
        let config = SignalConfig {
            volume_spike: Some(VolumeSpike {
                factor: 5.0,
                min_messages: 10,
                half_life: Duration::from_secs(7 * 24 * 3600),
            }),
            ..Default::default()
        };
        let mut w = IdentityWatch::default();
        w.seed_baseline(20.0, T0);
        // 100 messages in the hour: at the baseline's 5x, not above (the
        // baseline itself rises a little with each message).
        for i in 0..100 {
            let at = T0 + Duration::from_secs(i * 30);
            assert_eq!(w.message(&config, at), None, "message {i}");
        }
        let spike = (0..20).find_map(|i| w.message(&config, T0 + Duration::from_secs(3001 + i)));
        let e = spike.expect("a few more messages in the hour are a spike");
        assert_eq!(e.signal, Signal::VolumeSpike);
        assert!(e.count > e.threshold && e.threshold >= 100, "{e:?}");
        // A fresh identity: the floor applies.
        let mut fresh = IdentityWatch::default();
        for _ in 0..10 {
            assert_eq!(fresh.message(&config, T0), None);
        }
        assert!(fresh.message(&config, T0).is_some());
        // An hour later the old minutes no longer count.
        assert_eq!(fresh.last_hour(T0 + Duration::from_secs(3600)), 0);
    }

    #[test]
    fn bad_recipients_needs_enough_results_and_a_high_share() {
        let config = SignalConfig {
            bad_recipients: Some(BadRecipients {
                max_share: 0.5,
                min_recipients: 10,
                window: Duration::from_secs(3600),
            }),
            ..Default::default()
        };
        let mut w = IdentityWatch::default();
        assert_eq!(w.delivered(&config, 0, 9, T0), None, "too few");
        let e = w.delivered(&config, 1, 1, T0).expect("10 of 11 refused");
        assert_eq!((e.signal, e.count), (Signal::BadRecipients, 10));
        let later = T0 + Duration::from_secs(7200);
        assert_eq!(w.delivered(&config, 9, 1, later), None, "a new window");
    }

    #[test]
    fn known_addresses_are_those_seen_before() {
        let mut w = IdentityWatch::default();
        w.login(&SignalConfig::default(), ip(1), (0, 0), T0);
        assert!(w.known_before(ip(1), T0 + Duration::from_secs(1)));
        assert!(!w.known_before(ip(1), T0));
        assert!(!w.known_before(ip(2), T0 + Duration::from_secs(1)));
    }
}
