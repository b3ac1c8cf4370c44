//! Sending limits per identity at the edge: the session's
//! `SendingCheck` at MAIL and RCPT, and the counts added after a message
//! is accepted. The counting itself is pure
//! ([`portcullis_limits::sending`]) and runs in the limiter's backend
//! (Redis: one Lua script per MAIL; else this process).
//!
//! A user's limits are the config's defaults, replaced for what they name
//! by the user's own in the store (`portcullis user limits`), then by the
//! policy's user data (`accept{data = {limits = {...}}}`).

use std::time::Instant;

use portcullis_limits::sending::{Allowance, NamedLimit, Scope, SendingLimits, Subjects};
use portcullis_limits::Timestamp;
use portcullis_proto::Reply;

use crate::containment::{Containment, PerSession, Sender, MAX_WATCHED};
use crate::store_calls::StoreCalls;
use crate::telemetry;

/// How long a user's stored limits are remembered.
const LIMITS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Containment {
    /// The MAIL half of the session's `SendingCheck`: `None` lets it
    /// through. The limits are counted (perhaps in Redis) and what the
    /// message may still use is kept in `per` for its recipients.
    pub(crate) async fn mail_refused(
        &self,
        calls: &StoreCalls,
        who: &Sender<'_>,
        per: &mut PerSession,
        size: Option<u64>,
    ) -> Option<Reply> {
        if let Some(reply) = self.deferred(who) {
            return Some(reply);
        }
        let subjects = self.subjects(calls, who).await;
        let (quotas, names) = subjects.at_mail(size.unwrap_or(0));
        if quotas.is_empty() {
            return None;
        }
        let consumed = self.limiter.consume(&quotas, Timestamp::now()).await;
        if let Some(i) = consumed.refused {
            return Some(limited(&names[i], who));
        }
        per.allowance = Some(Allowance::from_mail(&quotas, &names, &consumed.counts));
        None
    }

    /// The MAIL half when nothing in it has to wait, as every MAIL is
    /// where the config sets no sending limit and the user has none of
    /// their own: no limit applies to the sender, and the user's stored
    /// limits are known (no store, or read less than `LIMITS_TTL` ago).
    /// `None` when the limits must be read or counted: then
    /// [`Self::mail_refused`], which gives the same answer. A session
    /// calls this first, so that such a MAIL builds no future.
    pub(crate) fn mail_refused_at_once(&self, who: &Sender<'_>) -> Option<Option<Reply>> {
        // The config's own limits apply to (nearly) every sender: no
        // need to look further.
        if !self.sending.is_empty() {
            return None;
        }
        let stored = self.cached_limits(who.authn)?;
        if !self.subjects_with(who, stored).list.is_empty() {
            return None;
        }
        Some(self.deferred(who))
    }

    /// The RCPT half: counted against the allowance MAIL found, with
    /// nothing to wait for, so a session calls it directly (no future to
    /// build for each recipient).
    pub(crate) fn recipient_refused(
        &self,
        who: &Sender<'_>,
        per: &PerSession,
        n: usize,
    ) -> Option<Reply> {
        let name = per.allowance.as_ref()?.recipient(n as u64)?;
        Some(limited(name, who))
    }

    /// Whom a message counts against, each with its limits: the user, the
    /// authz identity when it differs, the tenant (its domain).
    async fn subjects(&self, calls: &StoreCalls, who: &Sender<'_>) -> Subjects {
        let stored = self.stored_limits(calls, who.authn).await;
        self.subjects_with(who, stored)
    }

    fn subjects_with(&self, who: &Sender<'_>, stored: Option<SendingLimits>) -> Subjects {
        let mut user = self.sending.user.clone();
        if let Some(stored) = stored {
            user = user.overridden_by(&stored);
        }
        let data = who.meta.and_then(|meta| meta.user_data());
        if let Some(data) = data.as_ref().and_then(limits_from_user_data) {
            user = user.overridden_by(&data);
        }
        let mut list = Vec::new();
        if !user.is_empty() {
            list.push((Scope::Authn, who.authn.to_string(), user.clone()));
            if who.authz != who.authn {
                list.push((Scope::Authz, who.authz.to_string(), user));
            }
        }
        if !self.sending.tenant.is_empty() {
            if let Some((_, domain)) = who.authz.rsplit_once('@') {
                let tenant = domain.to_ascii_lowercase();
                list.push((Scope::Tenant, tenant, self.sending.tenant.clone()));
            }
        }
        Subjects { list }
    }

    /// A whole message as an MTA's policy request describes it (Postfix's
    /// `check_policy_service`: `sasl_username`, `client_address`,
    /// `recipient_count`, `size`): the same suspension, answers and
    /// limits as a message submitted here, counted when it is allowed.
    pub(crate) async fn check_for_mta(
        &self,
        calls: &StoreCalls,
        user: &str,
        ip: Option<std::net::IpAddr>,
        whole_message: bool,
        recipients: u64,
        size: u64,
    ) -> MtaVerdict {
        let ip = ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        // `sasl_username` is whom the client acts as; the limits, answers
        // and suspensions of whoever logged in apply too.
        let authn = self.mta_login(ip, user);
        for name in [authn.as_str(), user] {
            if let Some(why) = self.suspension(name, ip, Timestamp::now()) {
                return MtaVerdict::Reject(format!("5.7.1 Identity {name} {why}"));
            }
        }
        let who = Sender {
            authn: &authn,
            authz: user,
            ip,
            meta: None,
        };
        if self.deferred(&who).is_some() {
            return MtaVerdict::Defer("4.7.1 Sending deferred, try again later".into());
        }
        if let Some(why) = self.held(&who) {
            return MtaVerdict::Hold(why);
        }
        if !whole_message {
            return MtaVerdict::Allow;
        }
        let subjects = self.subjects(calls, &who).await;
        let (quotas, names) = subjects.at_mail(size);
        if quotas.is_empty() {
            return MtaVerdict::Allow;
        }
        let consumed = self.limiter.consume(&quotas, Timestamp::now()).await;
        if let Some(i) = consumed.refused {
            return MtaVerdict::Defer(limited_text(&names[i], &who));
        }
        let allowance = Allowance::from_mail(&quotas, &names, &consumed.counts);
        if let Some(name) = allowance.recipient(recipients.max(1)) {
            return MtaVerdict::Defer(limited_text(&name.clone(), &who));
        }
        let after = subjects.after_message(recipients, 0);
        if !after.is_empty() {
            self.limiter.consume(&after, Timestamp::now()).await;
        }
        MtaVerdict::Allow
    }

    /// After `250`: adds the message's recipients, and its bytes beyond
    /// the size MAIL declared, off the session's path.
    pub(crate) fn count_sent(
        &self,
        who: &Sender<'_>,
        recipients: usize,
        bytes: usize,
        declared: Option<u64>,
    ) {
        if self.sending.is_empty() && self.activity.is_none() {
            return;
        }
        let extra = (bytes as u64).saturating_sub(declared.unwrap_or(0));
        let cached = self
            .lock()
            .user_limits
            .get(who.authn)
            .and_then(|(_, l)| l.clone());
        let quotas = self
            .subjects_with(who, cached)
            .after_message(recipients as u64, extra);
        if quotas.is_empty() {
            return;
        }
        let limiter = self.limiter.clone();
        tokio::spawn(async move {
            limiter.consume(&quotas, Timestamp::now()).await;
        });
    }

    /// The user's stored limits if no store call is needed for them:
    /// `Some(None)` without a store or when they have none (or the last
    /// read failed), `None` when they must be read.
    fn cached_limits(&self, user: &str) -> Option<Option<SendingLimits>> {
        if self.activity.is_none() {
            return Some(None);
        }
        let state = self.lock();
        let (at, limits) = state.user_limits.get(user)?;
        (at.elapsed() < LIMITS_TTL).then(|| limits.clone())
    }

    /// The user's own limits from the store, remembered for [`LIMITS_TTL`].
    async fn stored_limits(&self, calls: &StoreCalls, user: &str) -> Option<SendingLimits> {
        let store = self.activity.clone()?;
        if let Some(limits) = self.cached_limits(user) {
            return limits;
        }
        let name = user.to_string();
        let limits = match calls.run(move || store.limits(&name)).await {
            Ok(Ok(text)) => text.as_deref().and_then(parse_stored_limits),
            _ => None,
        };
        let mut state = self.lock();
        if state.user_limits.len() >= MAX_WATCHED {
            state.user_limits.clear();
        }
        state
            .user_limits
            .insert(user.to_string(), (Instant::now(), limits.clone()));
        limits
    }
}

/// What an MTA's policy request is answered (see
/// [`Containment::check_for_mta`]); the text follows Postfix's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MtaVerdict {
    Allow,
    Defer(String),
    Reject(String),
    Hold(String),
}

fn limited(name: &NamedLimit, who: &Sender<'_>) -> Reply {
    let limit = name.to_string();
    tracing::warn!(client = %who.ip, user = %name.who, %limit, "sending limit reached");
    metrics::counter!(telemetry::SENDING_LIMITED, "scope" => name.scope.name(), "quantity" => name.quantity.name())
        .increment(1);
    Reply::sending_limit_reached(&limit)
}

/// The same log line and metric as [`limited`], with the text for a
/// policy answer (`4.7.1 Sending limit reached (...)`).
fn limited_text(name: &NamedLimit, who: &Sender<'_>) -> String {
    let reply = limited(name, who);
    match reply.status() {
        Some(status) => format!("{status} {}", reply.text()),
        None => reply.text(),
    }
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
pub(crate) fn parse_stored_limits(text: &str) -> Option<SendingLimits> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_limits::{Limiter, LimitsConfig};

    use crate::containment::{Containment, PerSession, Sender};
    use crate::store_calls::StoreCalls;

    fn containment(user_messages: &[&str]) -> Containment {
        let mut sending = portcullis_config::containment::Sending::default();
        sending.user.messages = user_messages.iter().map(|r| r.parse().unwrap()).collect();
        let limiter = Arc::new(Limiter::in_memory(LimitsConfig::default()));
        Containment::new(&sending, Default::default(), limiter, None)
    }

    fn alice() -> Sender<'static> {
        Sender {
            authn: "alice",
            authz: "alice",
            ip: "192.0.2.1".parse().unwrap(),
            meta: None,
        }
    }

    /// Without a limit anywhere, MAIL is answered at once (let through).
    #[test]
    fn a_mail_with_no_limit_is_answered_at_once() {
        let c = containment(&[]);
        assert_eq!(c.mail_refused_at_once(&alice()), Some(None));
    }

    /// With a configured limit the quick answer stands aside, and the
    /// counted check refuses the message over it.
    #[tokio::test]
    async fn a_mail_under_a_configured_limit_is_counted() {
        let c = containment(&["1/h"]);
        let calls = StoreCalls::new(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(1),
            1,
        );
        let mut per = PerSession::default();
        for expect_refused in [false, true] {
            assert_eq!(c.mail_refused_at_once(&alice()), None);
            let refused = c.mail_refused(&calls, &alice(), &mut per, None).await;
            assert_eq!(refused.is_some(), expect_refused, "{refused:?}");
        }
    }

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
