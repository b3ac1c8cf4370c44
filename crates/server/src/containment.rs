//! Compromise containment at the edge: sending limits per identity, the
//! signals that an account was taken, and the answers (log, hold, defer,
//! suspend) with their webhook.
//!
//! The counting and the signals are pure ([`portcullis_limits::sending`],
//! [`portcullis_limits::signals`]); this module feeds them facts and
//! carries out what they decide. Its API is narrow on purpose, a handful
//! of calls from the auth path and the session driver:
//!
//! - [`login_accepted`] after a credential was verified: a suspended
//!   identity is refused (`535`), else the login is recorded and fed to
//!   the signals; [`login_refused`] records a failure in the history;
//! - [`check_sending`] for the session's [`Effect::CheckSending`] at MAIL
//!   and RCPT: answers first, then the sending limits (`451 4.7.1`);
//! - [`message_spooled`] after `250`: counts recipients and bytes, feeds
//!   the volume signal; [`held`] says whether a message is to be held;
//! - [`closed_by_suspension`] before each command of an open session.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_config::containment::{Answer, Containment as Config, Sending};
use portcullis_credentials::activity::{ActivityStore, LoginRecord, SignalRecord, Suspension};
use portcullis_limits::sending::{Allowance, NamedLimit, Scope, SendingLimits, Subjects};
use portcullis_limits::signals::{Evidence, IdentityWatch};
use portcullis_limits::Timestamp;
use portcullis_proto::Reply;
use portcullis_session::{AuthOutcome, SendingCheck, Session};

use crate::connection::Peer;
use crate::webhook::Webhook;
use crate::{telemetry, Shared};

/// Identities watched at once; past it the oldest half is forgotten.
const MAX_WATCHED: usize = 100_000;
/// How long a user's stored limits are remembered.
const LIMITS_TTL: Duration = Duration::from_secs(5);
/// How often the store's suspensions are read again.
pub(crate) const SUSPENSION_POLL: Duration = Duration::from_secs(1);
/// Logins `portcullis user activity` shows.
pub const HISTORY_SHOWN: usize = 20;

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

#[derive(Default)]
struct State {
    watches: HashMap<String, (Timestamp, IdentityWatch)>,
    answers: HashMap<String, Vec<Active>>,
    /// The store's suspensions, as last read.
    suspended: HashMap<String, Suspension>,
    user_limits: HashMap<String, (Instant, Option<SendingLimits>)>,
}

/// What every connection shares.
pub(crate) struct Containment {
    sending: Sending,
    config: Config,
    activity: Option<Arc<dyn ActivityStore>>,
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

/// What one session keeps: the counts MAIL saw, for its RCPTs.
#[derive(Debug, Default)]
pub(crate) struct PerSession {
    allowance: Mutex<Option<Allowance>>,
    generation: AtomicU64,
}

impl Containment {
    pub(crate) fn new(
        sending: Sending,
        config: Config,
        activity: Option<Arc<dyn ActivityStore>>,
    ) -> Containment {
        let webhook = config
            .webhook
            .clone()
            .map(|url| Webhook::start(url, config.webhook_secret.clone()));
        Containment {
            sending,
            config,
            activity,
            webhook,
            state: Arc::default(),
            generation: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain maps: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer of `kind` in force for `user` from `ip`, if any.
    fn answer_for(&self, user: &str, ip: IpAddr, kind: Answer, now: Timestamp) -> Option<String> {
        let state = self.lock();
        let list = state.answers.get(user)?;
        list.iter()
            .find(|a| {
                a.answer == kind && a.until.is_none_or(|u| u > now) && !a.spared.contains(&ip)
            })
            .map(|a| a.signal.to_string())
    }

    /// Why `user` may not log in from `ip`, if suspended.
    fn suspension(&self, user: &str, ip: IpAddr, now: Timestamp) -> Option<String> {
        if let Some(signal) = self.answer_for(user, ip, Answer::Suspend, now) {
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
        let new: HashMap<String, Suspension> = list.into_iter().collect();
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
        let answer = self.config.answer(evidence.signal)?;
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
        if let Some(store) = self.activity.clone() {
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
            tokio::task::spawn_blocking(move || store.record_signal(&record));
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
        let entry = state
            .watches
            .entry(user.to_string())
            .or_insert_with(|| (now, IdentityWatch::default()));
        entry.0 = now;
        f(&mut entry.1)
    }
}

/// The identity a session sends as: `(authn_id, authz_id)`, from AUTH or
/// a trusted proxy's `XCLIENT LOGIN=`.
fn identity_of(session: &Session) -> Option<(String, String)> {
    if let Some(i) = session.identity() {
        return Some((i.authn_id.clone(), i.authz_id.clone()));
    }
    let login = session.xclient()?.login.clone()?;
    Some((login.clone(), login))
}

fn record(shared: &Shared, login: LoginRecord) {
    let Some(store) = shared.containment.activity.clone() else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = store.record_login(&login) {
            tracing::warn!(%error, "could not record a login in the history");
        }
    });
}

/// After a verified login: `Some(535)` for a suspended identity (not a
/// guess: not counted), else records it and feeds the signals.
pub(crate) async fn login_accepted(
    shared: &Shared,
    ip: IpAddr,
    authn_id: &str,
    mechanism: &str,
) -> Option<AuthOutcome> {
    let c = &shared.containment;
    let now = Timestamp::now();
    let mut login = LoginRecord {
        user: authn_id.to_string(),
        at_ms: now.millis(),
        address: ip.to_string(),
        mechanism: mechanism.to_string(),
        result: "accepted".into(),
    };
    if let Some(reason) = c.suspension(authn_id, ip, now) {
        tracing::warn!(client = %ip, user = authn_id, %reason, result = "rejected", "auth: identity suspended");
        metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "suspend").increment(1);
        login.result = "suspended".into();
        record(shared, login);
        return Some(AuthOutcome::Rejected { reply: None });
    }
    record(shared, login);
    seed_baseline(shared, authn_id, now).await;
    let signals = &c.config.signals;
    let failures = match signals.after_guessing {
        Some(_) => shared.limiter.recent_failures(ip, now).await,
        None => (0, 0),
    };
    let fired = c.with_watch(authn_id, now, |w| w.login(signals, ip, failures, now));
    for evidence in fired {
        if let Some(notice) = c.fire(authn_id, evidence, now) {
            tell_policy(shared, authn_id, notice);
        }
    }
    None
}

/// Runs `portcullis_identity_suspect` on the blocking pool (no session
/// waits for it) and applies the answer it picks, if any.
fn tell_policy(shared: &Shared, user: &str, notice: serde_json::Value) {
    let Some(policy) = shared.policy.clone() else {
        return;
    };
    let Some(runtime) = tokio::runtime::Handle::try_current().ok() else {
        return;
    };
    let task =
        tokio::task::spawn_blocking(move || policy.identity_suspect(&notice).map(|a| (a, notice)));
    let user = user.to_string();
    let shared_answer = shared.containment.answers_handle();
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
        shared_answer.replace(&user, &signal, answer);
    });
}

/// Hours of history the volume baseline starts from.
const BASELINE_HOURS: usize = 7 * 24;

/// Starts a new watch's volume baseline from the identity's sending
/// history (messages per hour over the hours since its first recorded
/// one, the current hour left out), so a restart or another instance does
/// not take a steady sender for a spike, nor a spike for normal.
async fn seed_baseline(shared: &Shared, user: &str, now: Timestamp) {
    let c = &shared.containment;
    if c.config.signals.volume_spike.is_none() {
        return;
    }
    let Some(store) = c.activity.clone() else {
        return;
    };
    if c.with_watch(user, now, |w| w.has_baseline()) {
        return;
    }
    let name = user.to_string();
    let Ok(Ok(hours)) = shared
        .store_calls
        .run(move || store.sent(&name, BASELINE_HOURS))
        .await
    else {
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
    c.with_watch(user, now, |w| {
        if !w.has_baseline() {
            w.seed_baseline(per_hour, now);
        }
    });
}

/// A refused login, for the history.
pub(crate) fn login_refused(shared: &Shared, ip: IpAddr, user: &str, mechanism: &str) {
    if user.is_empty() {
        return;
    }
    record(
        shared,
        LoginRecord {
            user: user.to_string(),
            at_ms: Timestamp::now().millis(),
            address: ip.to_string(),
            mechanism: mechanism.to_string(),
            result: "rejected".into(),
        },
    );
}

/// The session's [`SendingCheck`]: `None` lets it through.
pub(crate) async fn check_sending(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    check: SendingCheck,
) -> Option<Reply> {
    let (authn, authz) = identity_of(session)?;
    let ip = crate::defence::client_ip(peer, session);
    let c = &shared.containment;
    let now = Timestamp::now();
    match check {
        SendingCheck::Mail { size } => {
            if let Some(reply) = refused_by_answer(c, &authn, ip, now) {
                return Some(reply);
            }
            let subjects = subjects(shared, peer, &authn, &authz).await;
            let (quotas, names) = subjects.at_mail(size.unwrap_or(0));
            if quotas.is_empty() {
                return None;
            }
            let consumed = shared.limiter.consume(&quotas, now).await;
            if let Some(i) = consumed.refused {
                return Some(limited(&names[i], ip));
            }
            let allowance = Allowance::from_mail(&quotas, &names, &consumed.counts);
            *peer
                .containment
                .allowance
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(allowance);
            None
        }
        SendingCheck::Rcpt { n } => {
            let allowance = peer
                .containment
                .allowance
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let name = allowance.as_ref()?.recipient(n as u64)?.clone();
            drop(allowance);
            Some(limited(&name, ip))
        }
    }
}

fn refused_by_answer(c: &Containment, user: &str, ip: IpAddr, now: Timestamp) -> Option<Reply> {
    if let Some(signal) = c.answer_for(user, ip, Answer::Defer, now) {
        tracing::info!(client = %ip, user, signal, "message deferred: identity suspect");
        metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "defer").increment(1);
        return Some(Reply::sending_deferred());
    }
    None
}

fn limited(name: &NamedLimit, ip: IpAddr) -> Reply {
    let limit = name.to_string();
    tracing::warn!(client = %ip, user = %name.who, %limit, "sending limit reached");
    metrics::counter!(telemetry::SENDING_LIMITED, "scope" => name.scope.name(), "quantity" => name.quantity.name())
        .increment(1);
    Reply::sending_limit_reached(&limit)
}

/// Whom a message counts against, each with its limits: the user
/// (defaults, then the store's override, then the policy's user data),
/// the authz identity when it differs, the tenant (its domain).
async fn subjects(shared: &Shared, peer: &Peer, authn: &str, authz: &str) -> Subjects {
    let c = &shared.containment;
    let mut user = c.sending.user.clone();
    if let Some(stored) = stored_limits(shared, authn).await {
        user = user.overridden_by(&stored);
    }
    if let Some(data) = peer.meta.user_data() {
        if let Some(from_policy) = limits_from_user_data(&data) {
            user = user.overridden_by(&from_policy);
        }
    }
    let mut list = Vec::new();
    if !user.is_empty() {
        list.push((Scope::Authn, authn.to_string(), user.clone()));
        if authz != authn {
            list.push((Scope::Authz, authz.to_string(), user));
        }
    }
    if !c.sending.tenant.is_empty() {
        if let Some((_, domain)) = authz.rsplit_once('@') {
            let tenant = domain.to_ascii_lowercase();
            list.push((Scope::Tenant, tenant, c.sending.tenant.clone()));
        }
    }
    Subjects { list }
}

/// `limits = {messages = "500/h", recipients = {"2000/d"}}` in the user
/// data a policy's `portcullis.accept{data=}` gave.
fn limits_from_user_data(data: &serde_json::Value) -> Option<SendingLimits> {
    let limits = data.get("limits")?;
    let rates = |key: &str| -> Vec<portcullis_limits::sending::Rate> {
        match limits.get(key) {
            Some(serde_json::Value::String(s)) => s.parse().into_iter().collect(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect(),
            _ => Vec::new(),
        }
    };
    Some(SendingLimits {
        messages: rates("messages"),
        recipients: rates("recipients"),
        bytes: rates("bytes"),
    })
}

/// Parses the store's form: `messages=500/h,1000/d;recipients=2000/d`.
pub fn parse_stored_limits(text: &str) -> Option<SendingLimits> {
    let mut limits = SendingLimits::default();
    for part in text.split(';').filter(|p| !p.trim().is_empty()) {
        let (key, list) = part.split_once('=')?;
        let rates = list
            .split(',')
            .map(|r| r.parse().ok())
            .collect::<Option<Vec<_>>>()?;
        match key.trim() {
            "messages" => limits.messages = rates,
            "recipients" => limits.recipients = rates,
            "bytes" => limits.bytes = rates,
            _ => return None,
        }
    }
    Some(limits)
}

async fn stored_limits(shared: &Shared, user: &str) -> Option<SendingLimits> {
    let c = &shared.containment;
    let store = c.activity.clone()?;
    if let Some((at, limits)) = c.lock().user_limits.get(user) {
        if at.elapsed() < LIMITS_TTL {
            return limits.clone();
        }
    }
    let name = user.to_string();
    let found = shared.store_calls.run(move || store.limits(&name)).await;
    let limits = match found {
        Ok(Ok(text)) => text.as_deref().and_then(parse_stored_limits),
        _ => None,
    };
    let mut state = c.lock();
    if state.user_limits.len() >= MAX_WATCHED {
        state.user_limits.clear();
    }
    state
        .user_limits
        .insert(user.to_string(), (Instant::now(), limits.clone()));
    limits
}

/// A `defer` answer that came while this message was being sent: it is
/// refused after the dot rather than accepted (a sender with many
/// connections has a transaction in flight on each).
pub(crate) fn deferred_at_data(shared: &Shared, peer: &Peer, session: &Session) -> Option<Reply> {
    let (authn, _) = identity_of(session)?;
    let ip = crate::defence::client_ip(peer, session);
    refused_by_answer(&shared.containment, &authn, ip, Timestamp::now())
}

/// Whether a message from this session is to be held (the `hold` answer),
/// and why.
pub(crate) fn held(shared: &Shared, peer: &Peer, session: &Session) -> Option<String> {
    let (authn, _) = identity_of(session)?;
    let ip = crate::defence::client_ip(peer, session);
    let signal = shared
        .containment
        .answer_for(&authn, ip, Answer::Hold, Timestamp::now())?;
    metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "hold").increment(1);
    Some(format!("identity {authn} suspect: signal {signal}"))
}

/// After a message was spooled: counts its recipients and bytes, and
/// feeds the volume signal.
pub(crate) fn message_spooled(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
    recipients: usize,
    bytes: usize,
    declared: Option<u64>,
) {
    let Some((authn, authz)) = identity_of(session) else {
        return;
    };
    let c = &shared.containment;
    let now = Timestamp::now();
    let signals = &c.config.signals;
    if let Some(evidence) = c.with_watch(&authn, now, |w| w.message(signals, now)) {
        if let Some(notice) = c.fire(&authn, evidence, now) {
            tell_policy(shared, &authn, notice);
        }
    }
    if let Some(store) = c.activity.clone() {
        let user = authn.clone();
        tokio::task::spawn_blocking(move || {
            store.record_sent(&user, now.millis(), recipients as u64)
        });
    }
    if c.sending.is_empty() {
        return;
    }
    let extra = (bytes as u64).saturating_sub(declared.unwrap_or(0));
    let mut user = c.sending.user.clone();
    let cached = c
        .lock()
        .user_limits
        .get(&authn)
        .and_then(|(_, l)| l.clone());
    if let Some(stored) = cached {
        user = user.overridden_by(&stored);
    }
    if let Some(data) = peer
        .meta
        .user_data()
        .as_ref()
        .and_then(limits_from_user_data)
    {
        user = user.overridden_by(&data);
    }
    let mut list = vec![(Scope::Authn, authn.clone(), user.clone())];
    if authz != authn {
        list.push((Scope::Authz, authz.clone(), user));
    }
    if let Some((_, domain)) = authz.rsplit_once('@') {
        list.push((
            Scope::Tenant,
            domain.to_ascii_lowercase(),
            c.sending.tenant.clone(),
        ));
    }
    let quotas = Subjects { list }.after_message(recipients as u64, extra);
    if quotas.is_empty() {
        return;
    }
    let limiter = shared.limiter.clone();
    // Off the session's path: the 250 does not wait for this count.
    tokio::spawn(async move {
        limiter.consume(&quotas, Timestamp::now()).await;
    });
}

/// Delivery results for `user`'s recipients (the bad-recipients signal).
pub(crate) fn delivered(shared: &Shared, user: &str, accepted: u64, refused: u64) {
    let c = &shared.containment;
    let now = Timestamp::now();
    let signals = &c.config.signals;
    let fired = c.with_watch(user, now, |w| w.delivered(signals, accepted, refused, now));
    if let Some(notice) = fired.and_then(|evidence| c.fire(user, evidence, now)) {
        tell_policy(shared, user, notice);
    }
}

/// The `421` for an open session whose identity was suspended since its
/// last command. One atomic load unless the suspensions changed.
pub(crate) fn closed_by_suspension(
    shared: &Shared,
    peer: &Peer,
    session: &Session,
) -> Option<Reply> {
    let c = &shared.containment;
    let generation = c.generation.load(Ordering::Relaxed);
    if peer
        .containment
        .generation
        .swap(generation, Ordering::Relaxed)
        == generation
    {
        return None;
    }
    let (authn, _) = identity_of(session)?;
    let ip = crate::defence::client_ip(peer, session);
    let reason = c.suspension(&authn, ip, Timestamp::now())?;
    tracing::info!(client = %ip, user = %authn, %reason, "closing an open session: identity suspended");
    metrics::counter!(telemetry::CONTAINMENT_ACTIONS, "answer" => "suspend").increment(1);
    Some(Reply::identity_suspended())
}

/// Reads the store's suspensions every [`SUSPENSION_POLL`] and prunes the
/// login history once an hour.
pub(crate) fn watch_store(shared: Arc<Shared>) -> Option<tokio::task::JoinHandle<()>> {
    let store = shared.containment.activity.clone()?;
    let keep = shared.containment.config.history_for;
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
                shared.containment.set_suspensions(list);
            }
            tokio::time::sleep(SUSPENSION_POLL).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_limits_parse() {
        let l = super::parse_stored_limits("messages=500/h,1000/d;recipients=2000/d").unwrap();
        assert_eq!(l.messages.len(), 2);
        assert_eq!(l.recipients[0].count, 2000);
        assert!(super::parse_stored_limits("colours=5/h").is_none());
        let data = serde_json::json!({"limits": {"messages": "5/m", "bytes": ["1M/d"]}});
        let l = super::limits_from_user_data(&data).unwrap();
        assert_eq!((l.messages[0].count, l.bytes[0].count), (5, 1 << 20));
    }
}
