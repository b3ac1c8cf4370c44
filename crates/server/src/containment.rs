//! Compromise containment at the edge: sending limits per identity, the
//! signals that an account was taken, and the answers (log, hold, defer,
//! suspend) with their webhook.
//!
//! The counting and the signals are pure ([`portcullis_limits::sending`],
//! [`portcullis_limits::signals`]); this module feeds them facts and
//! carries out what they decide. Its API is narrow on purpose, a handful
//! of calls from the auth path and the session driver:
//!
//! - `login_accepted` (from the auth service's record step) after a
//!   credential was verified: a suspended identity is refused (`535`),
//!   else the login is recorded and fed to the signals; `login_refused`
//!   records a failure in the history;
//! - `check_sending` (`sending_limits.rs`) for the session's
//!   [`Effect::CheckSending`] at MAIL and RCPT: answers first, then the
//!   sending limits (`451 4.7.1`);
//! - `message_spooled` after `250`: counts recipients and bytes, feeds
//!   the volume signal; `held` says whether a message is to be held;
//! - `closed_by_suspension` before each command of an open session;
//! - `delivered` from the delivery engine (the bad-recipients signal).
//!
//! Answers from signals are kept in this process (with the addresses
//! spared: those that logged in as the identity well before the signal);
//! a suspension is also written to the user store, where `portcullis user
//! suspend|resume` changes it and every instance reads it.
//!
//! [`Effect::CheckSending`]: portcullis_session::Effect::CheckSending

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_config::containment::{self as config, Answer, Containment as Config};
use portcullis_credentials::activity::{
    ActivityEvent, ActivityStore, LoginRecord, SignalRecord, Suspension,
};
use portcullis_limits::sending::{Allowance, SendingLimits};
use portcullis_limits::signals::{Evidence, IdentityWatch, Signal, SignalConfig};
use portcullis_limits::{Limiter, Timestamp};
use portcullis_lua::Policy;
use portcullis_proto::Reply;

use crate::activity_log::ActivityLog;
use crate::outcome::Outcome;
use crate::store_calls::StoreCalls;
use crate::telemetry;
use crate::webhook::Webhook;

/// Identities watched at once; past it the oldest half is forgotten.
pub(crate) const MAX_WATCHED: usize = 100_000;
/// How often the store's suspensions are read again.
pub(crate) const SUSPENSION_POLL: Duration = Duration::from_secs(1);

/// An answer in force for one identity.
#[derive(Debug, Clone)]
struct Active {
    answer: Answer,
    signal: &'static str,
    until: Option<Timestamp>,
    /// Addresses the answer does not apply to.
    spared: Vec<IpAddr>,
    /// A suspension the store was seen to hold (see
    /// [`Containment::set_suspensions`]).
    confirmed: bool,
}

/// The maps below are looked up several times for every message, by the
/// name of a user who has logged in (so not chosen by a stranger), and
/// are bounded in size ([`MAX_WATCHED`]): they use foldhash, seeded per
/// process, instead of SipHash, which cost about 150 instructions a
/// lookup.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub(crate) struct State {
    watches: Map<String, (Timestamp, IdentityWatch)>,
    answers: Map<String, Vec<Active>>,
    /// The store's suspensions, as last read.
    suspended: Map<String, Suspension>,
    pub(crate) user_limits: Map<String, (Instant, Option<SendingLimits>)>,
    /// Logins an MTA accepted through the Dovecot front end, by (SMTP
    /// client, the name the MTA was told): whom its policy requests
    /// (`sasl_username`, the authorization identity) are about.
    mta_logins: Map<(IpAddr, String), (Instant, String)>,
}

/// How long an MTA's login is remembered for its policy requests.
const MTA_LOGIN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Containment {
    /// Remembers that the MTA's client at `ip` logged in as `authn` and
    /// acts as `authz` (the name the MTA now calls it).
    pub(crate) fn remember_mta_login(&self, ip: IpAddr, authz: &str, authn: &str) {
        let mut state = self.lock();
        if state.mta_logins.len() >= MAX_WATCHED {
            state
                .mta_logins
                .retain(|_, (at, _)| at.elapsed() < MTA_LOGIN_TTL);
            if state.mta_logins.len() >= MAX_WATCHED {
                state.mta_logins.clear();
            }
        }
        state
            .mta_logins
            .insert((ip, authz.to_string()), (Instant::now(), authn.to_string()));
    }

    /// The login behind an MTA's `sasl_username` for the client at `ip`
    /// (the name itself when it logged in as itself or is not known).
    pub(crate) fn mta_login(&self, ip: IpAddr, authz: &str) -> String {
        self.lock()
            .mta_logins
            .get(&(ip, authz.to_string()))
            .filter(|(at, _)| at.elapsed() < MTA_LOGIN_TTL)
            .map_or_else(|| authz.to_string(), |(_, authn)| authn.clone())
    }
}

/// What every connection shares.
pub(crate) struct Containment {
    pub(crate) sending: Sending,
    config: Config,
    /// `config.signals` as the limits crate computes them.
    signals: SignalConfig,
    pub(crate) activity: Option<Arc<dyn ActivityStore>>,
    /// Writes the history in batches (`activity`'s tables).
    history: Option<ActivityLog>,
    pub(crate) limiter: Arc<Limiter>,
    /// The policy script, for `portcullis_identity_suspect` (set once, at
    /// start).
    policy: OnceLock<Arc<Policy>>,
    webhook: Option<Webhook>,
    /// Shared with the task that writes a suspension to the store.
    state: Arc<Mutex<State>>,
    /// Bumped when the suspensions change, so sessions look only then.
    generation: Arc<AtomicU64>,
}

/// The answers, for a task of the policy event.
struct AnswersHandle {
    state: Arc<Mutex<State>>,
    generation: Arc<AtomicU64>,
    answer_for: Duration,
}

impl AnswersHandle {
    /// The policy's `portcullis_identity_suspect` chose `answer` instead.
    /// (A suspension it chooses stays in this process: `portcullis user
    /// suspend` is the operator's way to every instance.)
    fn replace(&self, user: &str, signal: &str, answer: Answer) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = state.answers.get_mut(user) else {
            return;
        };
        for a in list.iter_mut().filter(|a| a.signal == signal) {
            a.answer = answer;
            // Lasts as a signal's answer does; not written to the store.
            a.until = a.until.or(Some(Timestamp::now() + self.answer_for));
        }
        drop(state);
        tracing::warn!(
            user,
            signal,
            answer = answer.name(),
            "identity suspect: answer chosen by the policy"
        );
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// The config's sending limits, as the limits crate counts them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sending {
    pub user: SendingLimits,
    pub tenant: SendingLimits,
}

impl Sending {
    pub(crate) fn is_empty(&self) -> bool {
        self.user.is_empty() && self.tenant.is_empty()
    }
}

fn limits_of(l: &config::SendingLimits) -> SendingLimits {
    let rates = |list: &[config::Rate]| {
        list.iter()
            .map(|r| portcullis_limits::sending::Rate {
                count: r.count,
                window: r.window,
            })
            .collect()
    };
    SendingLimits {
        messages: rates(&l.messages),
        recipients: rates(&l.recipients),
        bytes: rates(&l.bytes),
    }
}

fn signals_of(c: &config::SignalConfig) -> SignalConfig {
    use portcullis_limits::signals as s;
    SignalConfig {
        many_networks: c.many_networks.map(|m| s::ManyNetworks {
            max_networks: m.max_networks,
            window: m.window,
        }),
        after_guessing: c.after_guessing.map(|g| s::AfterGuessing {
            address_failures: g.address_failures,
            network_failures: g.network_failures,
        }),
        volume_spike: c.volume_spike.map(|v| s::VolumeSpike {
            factor: v.factor,
            min_messages: v.min_messages,
            half_life: v.half_life,
        }),
        bad_recipients: c.bad_recipients.map(|b| s::BadRecipients {
            max_share: b.max_share,
            min_recipients: b.min_recipients,
            window: b.window,
        }),
    }
}

fn signal_of(signal: Signal) -> config::Signal {
    match signal {
        Signal::ManyNetworks => config::Signal::ManyNetworks,
        Signal::AfterGuessing => config::Signal::AfterGuessing,
        Signal::VolumeSpike => config::Signal::VolumeSpike,
        Signal::BadRecipients => config::Signal::BadRecipients,
    }
}

/// What one session keeps: the counts MAIL saw, for its RCPTs, and the
/// suspensions generation it last looked at.
#[derive(Debug, Default)]
pub(crate) struct PerSession {
    pub(crate) allowance: Option<Allowance>,
    generation: u64,
}

/// Who is sending, as a session knows it.
#[derive(Debug, Clone)]
pub(crate) struct Sender<'a> {
    pub authn: &'a str,
    pub authz: &'a str,
    /// The client (the one a trusted proxy named, if any).
    pub ip: IpAddr,
    /// Where what the policy attached at AUTH is kept: read only by the
    /// sending limits at MAIL (a lock and a copy, where the other checks
    /// of each message need none).
    pub meta: Option<&'a portcullis_lua::ConnMeta>,
}

impl Containment {
    pub(crate) fn new(
        sending: &config::Sending,
        config: Config,
        limiter: Arc<Limiter>,
        activity: Option<Arc<dyn ActivityStore>>,
    ) -> Containment {
        let webhook = config
            .webhook
            .clone()
            .map(|url| Webhook::start(url, config.webhook_secret.clone()));
        Containment {
            sending: Sending {
                user: limits_of(&sending.user),
                tenant: limits_of(&sending.tenant),
            },
            signals: signals_of(&config.signals),
            config,
            history: activity.clone().map(ActivityLog::start),
            activity,
            limiter,
            policy: OnceLock::new(),
            webhook,
            state: Arc::default(),
            generation: Arc::default(),
        }
    }

    /// At shutdown: writes the history still queued (waits `limit` at most).
    pub(crate) fn finish_history(&self, limit: Duration) {
        if let Some(history) = &self.history {
            history.finish(limit);
        }
    }

    /// Lets `portcullis_identity_suspect` of `policy` hear each signal.
    pub(crate) fn set_policy(&self, policy: Arc<Policy>) {
        let _ = self.policy.set(policy);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain maps: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer of `kind` in force for `user` from `ip`, if any. The
    /// clock is read only when `user` has answers at all: the check runs
    /// twice for every message, and almost always finds none.
    pub(crate) fn answer_for(
        &self,
        user: &str,
        ip: IpAddr,
        kind: Answer,
        now: impl FnOnce() -> Timestamp,
    ) -> Option<String> {
        let state = self.lock();
        let list = state.answers.get(user)?;
        let now = now();
        list.iter()
            .find(|a| {
                a.answer == kind && a.until.is_none_or(|u| u > now) && !a.spared.contains(&ip)
            })
            .map(|a| a.signal.to_string())
    }

    /// Why `user` may not log in from `ip`, if suspended.
    pub(crate) fn suspension(&self, user: &str, ip: IpAddr, now: Timestamp) -> Option<String> {
        if let Some(signal) = self.answer_for(user, ip, Answer::Suspend, || now) {
            return Some(format!("suspended after signal {signal}"));
        }
        let state = self.lock();
        let stored = state.suspended.get(user)?;
        // Our own suspension spares addresses; the store's covers all of
        // them once an operator wrote it (the spared list lives here).
        let ours = state
            .answers
            .get(user)
            .is_some_and(|list| list.iter().any(|a| a.answer == Answer::Suspend));
        (!ours).then(|| format!("suspended: {}", stored.reason))
    }

    /// Replaces the known suspensions with the store's. Our own
    /// suspensions are confirmed once the store shows them, and lifted
    /// when a confirmed one is gone from it (`portcullis user resume`).
    pub(crate) fn set_suspensions(&self, list: Vec<(String, Suspension)>) {
        let new: Map<String, Suspension> = list.into_iter().collect();
        let mut state = self.lock();
        let mut changed = state.suspended != new;
        for (user, answers) in state.answers.iter_mut() {
            let stored = new.contains_key(user);
            let before = answers.len();
            answers.retain(|a| a.answer != Answer::Suspend || !a.confirmed || stored);
            changed |= answers.len() != before;
            for a in answers.iter_mut().filter(|a| a.answer == Answer::Suspend) {
                a.confirmed |= stored;
            }
        }
        if changed {
            state.suspended = new;
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Acts on a signal: log, metric, the answer, webhook. Returns the
    /// notice (for the policy event) when the signal was new.
    fn fire(&self, user: &str, evidence: Evidence, now: Timestamp) -> Option<serde_json::Value> {
        let signal = evidence.signal.name();
        let answer = self.config.answer(signal_of(evidence.signal))?;
        let spared = self.spared(user, now);
        {
            let mut state = self.lock();
            let list = state.answers.entry(user.to_string()).or_default();
            list.retain(|a| a.until.is_none_or(|u| u > now));
            // Once per signal while its answer lasts, not once per message.
            if list.iter().any(|a| a.signal == signal) {
                return None;
            }
            let until = match answer {
                Answer::Suspend => None,
                _ => Some(now + self.config.answer_for),
            };
            list.push(Active {
                answer,
                signal,
                until,
                spared: spared.clone(),
                confirmed: false,
            });
        }
        let addresses: Vec<String> = evidence.addresses.iter().map(|a| a.to_string()).collect();
        tracing::warn!(
            user,
            signal,
            answer = answer.name(),
            count = evidence.count,
            threshold = evidence.threshold,
            addresses = %addresses.join(","),
            spared = %spared.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            "identity suspect"
        );
        metrics::counter!(telemetry::IDENTITY_SIGNALS, "signal" => signal, "answer" => answer.name())
            .increment(1);
        if answer == Answer::Suspend {
            self.suspend_in_store(user, signal, &evidence, now);
        }
        if let Some(history) = &self.history {
            let record = SignalRecord {
                user: user.to_string(),
                at_ms: now.millis(),
                signal: signal.to_string(),
                answer: answer.name().to_string(),
                detail: format!(
                    "{} over {}; addresses {}",
                    evidence.count,
                    evidence.threshold,
                    addresses.join(",")
                ),
            };
            history.record(ActivityEvent::Signal(record));
        }
        let notice = serde_json::json!({
            "event": "identity_suspect",
            "identity": user,
            "signal": signal,
            "answer": answer.name(),
            "evidence": {
                "addresses": addresses,
                "count": evidence.count,
                "threshold": evidence.threshold,
                "first_ms": evidence.first.millis(),
                "last_ms": evidence.last.millis(),
            },
            "spared": spared.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "at_ms": now.millis(),
        });
        if let Some(webhook) = &self.webhook {
            webhook.send(notice.clone());
        }
        Some(notice)
    }

    /// What a task that outlives the caller needs to change answers.
    fn answers_handle(&self) -> AnswersHandle {
        AnswersHandle {
            state: self.state.clone(),
            generation: self.generation.clone(),
            answer_for: self.config.answer_for,
        }
    }

    /// Addresses that logged in as `user` long enough before `now`.
    fn spared(&self, user: &str, now: Timestamp) -> Vec<IpAddr> {
        let before = now.saturating_sub(self.config.spare_known_after);
        let state = self.lock();
        let Some((_, watch)) = state.watches.get(user) else {
            return Vec::new();
        };
        let mut spared: Vec<IpAddr> = watch
            .addresses()
            .into_iter()
            .filter(|ip| watch.known_before(*ip, before))
            .collect();
        spared.dedup();
        spared
    }

    fn suspend_in_store(&self, user: &str, signal: &str, evidence: &Evidence, now: Timestamp) {
        let suspension = Suspension {
            reason: format!(
                "signal {signal} ({} over {})",
                evidence.count, evidence.threshold
            ),
            at_ms: now.millis(),
        };
        // Our answer is in force now; the store's copy is for the CLI and
        // other instances (and `resume` lifts both).
        self.generation.fetch_add(1, Ordering::Relaxed);
        if let Some(store) = self.activity.clone() {
            let (user, state) = (user.to_string(), self.state.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.set_suspension(&user, Some(&suspension)) {
                    tracing::error!(%user, %error, "could not store a suspension");
                    return;
                }
                // In the store now: a `resume` from here on lifts it.
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                let answers = state.answers.get_mut(&user).into_iter().flatten();
                for a in answers.filter(|a| a.answer == Answer::Suspend) {
                    a.confirmed = true;
                }
            });
        }
    }

    fn with_watch<T>(
        &self,
        user: &str,
        now: Timestamp,
        f: impl FnOnce(&mut IdentityWatch) -> T,
    ) -> T {
        let mut state = self.lock();
        if state.watches.len() >= MAX_WATCHED && !state.watches.contains_key(user) {
            // Forget the least recently seen half: bounded memory.
            let mut seen: Vec<Timestamp> = state.watches.values().map(|(t, _)| *t).collect();
            seen.sort();
            let cut = seen[seen.len() / 2];
            state.watches.retain(|_, (t, _)| *t > cut);
        }
        // Looked up before inserted: the name is copied once per user, not
        // once per message.
        if !state.watches.contains_key(user) {
            state
                .watches
                .insert(user.to_string(), (now, IdentityWatch::default()));
        }
        let entry = state.watches.get_mut(user).expect("inserted above");
        entry.0 = now;
        f(&mut entry.1)
    }
}

impl Containment {
    fn record(&self, login: LoginRecord) {
        if let Some(history) = &self.history {
            history.record(ActivityEvent::Login(login));
        }
    }

    /// After a verified login: `Some(535)` for a suspended identity (not
    /// a guess: not counted), else records it and feeds the signals.
    pub(crate) async fn login_accepted(
        &self,
        calls: &StoreCalls,
        ip: IpAddr,
        authn_id: &str,
        mechanism: &str,
    ) -> Option<Outcome> {
        let now = Timestamp::now();
        let mut login = LoginRecord::one(
            authn_id.to_string(),
            now.millis(),
            portcullis_limits::ip_text(ip),
            mechanism.to_string(),
            "accepted".into(),
        );
        if let Some(reason) = self.suspension(authn_id, ip, now) {
            tracing::warn!(client = %ip, user = authn_id, %reason, result = "rejected", "auth: identity suspended");
            metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "suspend").increment(1);
            login.result = "suspended".into();
            self.record(login);
            return Some(Outcome::Rejected {
                reply: None,
                challenge: None,
            });
        }
        self.record(login);
        self.seed_baseline(calls, authn_id, now).await;
        let signals = &self.signals;
        let failures = match signals.after_guessing {
            Some(_) => self.limiter.recent_failures(ip, now).await,
            None => (0, 0),
        };
        let fired = self.with_watch(authn_id, now, |w| w.login(signals, ip, failures, now));
        for evidence in fired {
            if let Some(notice) = self.fire(authn_id, evidence, now) {
                self.tell_policy(authn_id, notice);
            }
        }
        None
    }

    /// Runs `portcullis_identity_suspect` on the blocking pool (no session
    /// waits for it) and applies the answer it picks, if any.
    fn tell_policy(&self, user: &str, notice: serde_json::Value) {
        let Some(policy) = self.policy.get().cloned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = tokio::task::spawn_blocking(move || {
            policy.identity_suspect(&notice).map(|a| (a, notice))
        });
        let (user, answers) = (user.to_string(), self.answers_handle());
        runtime.spawn(async move {
            let Ok(Some((answer, notice))) = task.await else {
                return;
            };
            let answer = match answer.as_str() {
                "hold" => Answer::Hold,
                "defer" => Answer::Defer,
                "suspend" => Answer::Suspend,
                _ => Answer::Log,
            };
            let signal = notice["signal"].as_str().unwrap_or_default().to_string();
            answers.replace(&user, &signal, answer);
        });
    }

    /// Starts a new watch's volume baseline from the identity's sending
    /// history (messages per hour over the hours since its first recorded
    /// one, the current hour left out), so a restart or another instance
    /// does not take a steady sender for a spike, nor a spike for normal.
    async fn seed_baseline(&self, calls: &StoreCalls, user: &str, now: Timestamp) {
        if self.signals.volume_spike.is_none() {
            return;
        }
        let Some(store) = self.activity.clone() else {
            return;
        };
        if self.with_watch(user, now, |w| w.has_baseline()) {
            return;
        }
        let name = user.to_string();
        let Ok(Ok(hours)) = calls.run(move || store.sent(&name, BASELINE_HOURS)).await else {
            return;
        };
        let this_hour = now.millis() / 3_600_000;
        let past: Vec<_> = hours.iter().filter(|h| h.hour < this_hour).collect();
        let per_hour = match past.iter().map(|h| h.hour).min() {
            Some(first) => {
                let span = (this_hour - first).max(1) as f64;
                past.iter().map(|h| h.messages).sum::<u64>() as f64 / span
            }
            None => 0.0,
        };
        self.with_watch(user, now, |w| {
            if !w.has_baseline() {
                w.seed_baseline(per_hour, now);
            }
        });
    }

    /// A refused login, for the history.
    pub(crate) fn login_refused(&self, ip: IpAddr, user: &str, mechanism: &str) {
        if user.is_empty() {
            return;
        }
        self.record(LoginRecord::one(
            user.to_string(),
            Timestamp::now().millis(),
            portcullis_limits::ip_text(ip),
            mechanism.to_string(),
            "rejected".into(),
        ));
    }

    /// `451 4.7.1` when a `defer` answer covers this sender.
    pub(crate) fn deferred(&self, who: &Sender<'_>) -> Option<Reply> {
        let signal = self.answer_for(who.authn, who.ip, Answer::Defer, Timestamp::now)?;
        tracing::info!(client = %who.ip, user = %who.authn, signal, "message deferred: identity suspect");
        metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "defer").increment(1);
        Some(Reply::sending_deferred())
    }

    /// Whether a message from `who` is to be held (the `hold` answer), and
    /// why.
    pub(crate) fn held(&self, who: &Sender<'_>) -> Option<String> {
        let signal = self.answer_for(who.authn, who.ip, Answer::Hold, Timestamp::now)?;
        metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "hold").increment(1);
        Some(format!("identity {} suspect: signal {signal}", who.authn))
    }

    /// A message arrived whole (after the dot, before it is stored): it
    /// feeds the volume signal now, so that an answer it triggers already
    /// covers it and the transactions in flight beside it.
    pub(crate) fn message_arriving(&self, who: &Sender<'_>) {
        let now = Timestamp::now();
        let signals = &self.signals;
        if let Some(evidence) = self.with_watch(who.authn, now, |w| w.message(signals, now)) {
            if let Some(notice) = self.fire(who.authn, evidence, now) {
                self.tell_policy(who.authn, notice);
            }
        }
    }

    /// After a message was spooled: the hourly history and the sending
    /// counts.
    pub(crate) fn message_spooled(
        &self,
        who: &Sender<'_>,
        recipients: usize,
        bytes: usize,
        declared: Option<u64>,
    ) {
        if let Some(history) = &self.history {
            history.record(ActivityEvent::Sent {
                user: who.authn.to_string(),
                at_ms: Timestamp::now().millis(),
                messages: 1,
                recipients: recipients as u64,
            });
        }
        self.count_sent(who, recipients, bytes, declared);
    }

    /// Delivery results for `user`'s recipients (the bad-recipients signal).
    pub(crate) fn delivered(&self, user: &str, accepted: u64, refused: u64) {
        let now = Timestamp::now();
        let signals = &self.signals;
        let fired = self.with_watch(user, now, |w| w.delivered(signals, accepted, refused, now));
        if let Some(notice) = fired.and_then(|evidence| self.fire(user, evidence, now)) {
            self.tell_policy(user, notice);
        }
    }

    /// The `421` for an open session whose identity was suspended since
    /// its last command. One atomic load unless the suspensions changed.
    pub(crate) fn closed_by_suspension(
        &self,
        who: Option<&Sender<'_>>,
        per: &mut PerSession,
    ) -> Option<Reply> {
        let generation = self.generation.load(Ordering::Relaxed);
        if std::mem::replace(&mut per.generation, generation) == generation {
            return None;
        }
        let who = who?;
        let reason = self.suspension(who.authn, who.ip, Timestamp::now())?;
        tracing::info!(client = %who.ip, user = %who.authn, %reason, "closing an open session: identity suspended");
        metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "suspend").increment(1);
        Some(Reply::identity_suspended())
    }

    /// Whether the suspensions changed since `per` last looked (cheap).
    pub(crate) fn suspensions_changed(&self, per: &PerSession) -> bool {
        self.generation.load(Ordering::Relaxed) != per.generation
    }
}

/// Hours of history the volume baseline starts from.
const BASELINE_HOURS: usize = 7 * 24;

/// Reads the store's suspensions every [`SUSPENSION_POLL`] and prunes the
/// login history once an hour.
pub(crate) fn watch_store(containment: Arc<Containment>) -> Option<tokio::task::JoinHandle<()>> {
    let store = containment.activity.clone()?;
    let keep = containment.config.history_for;
    Some(tokio::spawn(async move {
        let mut last_prune: Option<Instant> = None;
        loop {
            let (probe, prune) = (
                store.clone(),
                last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)),
            );
            if prune {
                last_prune = Some(Instant::now());
            }
            let read = tokio::task::spawn_blocking(move || {
                if prune {
                    let before = Timestamp::now().saturating_sub(keep).millis();
                    if let Err(error) = probe.prune_logins(before) {
                        tracing::warn!(%error, "could not prune the login history");
                    }
                }
                probe.suspensions()
            })
            .await;
            if let Ok(Ok(list)) = read {
                containment.set_suspensions(list);
            }
            tokio::time::sleep(SUSPENSION_POLL).await;
        }
    }))
}
