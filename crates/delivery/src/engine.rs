//! The delivery workers: scan the spool, deliver what is due, settle each
//! recipient's fate, and keep idle connections for reuse.
//!
//! One dispatcher task scans the spool every `scan_interval`, oldest first,
//! and hands each due message to a task holding permits of the routes it
//! needs ([`crate::lanes`]): each route delivers at most its `workers`
//! messages at a time, in arrival order, and a message waiting for a busy
//! route never holds up one for a free route. When a delivery ends, the
//! messages passed over are looked at again at once. A message is "due"
//! when it has no `.state` file or its `next_attempt_ms` has passed; the
//! state is read again inside the task, so a message is never tried twice
//! for one due time.
//!
//! Settling a message, in this order: spool the bounce (if any recipient
//! failed for good), then either remove the entry (nothing pending) or write
//! its new state (pending recipients, next attempt). A crash between the
//! steps repeats work — a second bounce, or a second delivery to a
//! recipient already accepted — and never loses it: at-least-once. The
//! window for a duplicate delivery is from the next hop's `250` after the
//! dot to the spool update that follows, a few milliseconds per message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use portcullis_config::delivery::{Delivery, Identity, Relay, Route, Transport};
use portcullis_spool::{MessageId, Spool, SpoolError, StoredMeta};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::backoff::{expired, retry_delay};
use crate::client::{Client, Envelope, Settings};
use crate::dsn::{self, Action, Bounce};
use crate::error::status;
use crate::lanes::{Held, Lanes};
use crate::maildir;
use crate::message::with_identity_header;
use crate::outcome::{Failure, Outcome};
use crate::route;
use crate::state::{self, DeliveryState};
use crate::tls::TlsConfigs;
use crate::DeliveryError;

/// An idle connection older than this is closed instead of reused (next
/// hops commonly time idle clients out after 30-300 s).
const POOL_IDLE: Duration = Duration::from_secs(20);
/// How long running deliveries may finish after a stop signal.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The delivery stage of one server.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Told, after each delivery attempt of a message whose sender
/// authenticated, how many of its recipients the next hop accepted and how
/// many it refused permanently as bad addresses (`5.1.x`): the input of
/// the bad-recipients signal. Called on the engine's task: must not block.
pub type ResultObserver = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

struct Inner {
    spool: Arc<Spool>,
    config: Delivery,
    hostname: String,
    tls: TlsConfigs,
    /// Idle connections by route name. Never locked across an `.await`.
    pool: Mutex<HashMap<String, Vec<Client>>>,
    /// Messages being delivered now.
    in_flight: Mutex<HashSet<MessageId>>,
    /// Per-route concurrency.
    lanes: Lanes,
    observer: Option<ResultObserver>,
}

/// The lanes each spooled message needs, by id: worked out once from its
/// metadata and state, forgotten when the message starts (its pending
/// recipients may change) or leaves the spool.
type Needs = HashMap<MessageId, Vec<usize>>;

impl Engine {
    /// Fails only when a route's CA file cannot be read.
    pub fn new(
        spool: Arc<Spool>,
        config: Delivery,
        hostname: String,
    ) -> Result<Engine, DeliveryError> {
        Ok(Engine {
            inner: Arc::new(Inner {
                spool,
                lanes: Lanes::new(&config),
                tls: TlsConfigs::new(&config.routes)?,
                config,
                hostname,
                pool: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
                observer: None,
            }),
        })
    }

    /// Reports recipient results to `observer` (see [`ResultObserver`]).
    pub fn with_observer(mut self, observer: ResultObserver) -> Engine {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.observer = Some(observer);
        }
        self
    }

    /// Runs until `stop` turns true (or its sender is dropped).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let spool = self.inner.spool.clone();
        match tokio::task::spawn_blocking(move || spool.remove_orphan_states()).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::warn!(removed = n, "removed delivery state of vanished messages")
            }
            Ok(Err(error)) => tracing::error!(%error, "cannot sweep delivery state files"),
            _ => {}
        }
        let mut tasks = JoinSet::new();
        tracing::info!(
            workers = self.inner.config.workers,
            routes = self.inner.config.routes.len(),
            "delivery started"
        );
        let finished = Arc::new(Notify::new());
        let mut needs = Needs::new();
        let mut waiting = Vec::new();
        let mut next_scan = Instant::now();
        loop {
            if Instant::now() >= next_scan {
                (waiting, needs) = self.due(needs).await;
                next_scan = Instant::now() + self.inner.config.scan_interval;
            }
            self.dispatch(&mut waiting, &mut needs, &mut tasks, &finished);
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                // Time for the next scan.
                _ = tokio::time::sleep_until(next_scan) => {}
                // A delivery ended: its lanes may take a waiting message.
                _ = finished.notified() => {}
                // Stop: what is not started stays spooled for the next run.
                _ = stop.changed() => break,
            }
        }
        tracing::info!(running = tasks.len(), "delivery stopping");
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        let idle: Vec<Client> = lock(&self.inner.pool)
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for client in idle {
            client.quit().await;
        }
    }

    /// Starts each waiting message that can take a permit on one of the
    /// lanes it needs; the others stay waiting, in order.
    fn dispatch(
        &self,
        waiting: &mut Vec<(MessageId, Vec<usize>)>,
        needs: &mut Needs,
        tasks: &mut JoinSet<()>,
        finished: &Arc<Notify>,
    ) {
        waiting.retain(|(id, lanes)| {
            let Some(held) = self.inner.lanes.try_take(lanes) else {
                return true;
            };
            needs.remove(id);
            if !lock(&self.inner.in_flight).insert(id.clone()) {
                return false;
            }
            let done = Done {
                inner: self.inner.clone(),
                id: id.clone(),
                held: Some(held),
                finished: finished.clone(),
            };
            tasks.spawn(async move {
                let held = done.held.as_ref().expect("held until dropped");
                done.inner.deliver(&done.id, held).await;
            });
            false
        });
    }

    /// Ids due now, oldest first, skipping those in flight, each with the
    /// lanes it needs (from `needs`, or worked out and added to it).
    async fn due(&self, mut needs: Needs) -> (Vec<(MessageId, Vec<usize>)>, Needs) {
        let inner = self.inner.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let ids = inner.spool.list()?;
            let in_flight = lock(&inner.in_flight).clone();
            let mut due = Vec::new();
            for id in ids {
                let state = state::load(&inner.spool, &id).unwrap_or_default();
                if in_flight.contains(&id) || !state.is_due(now) || state.hold == Some(true) {
                    continue;
                }
                let lanes = match needs.get(&id) {
                    Some(lanes) => lanes.clone(),
                    None => inner.lanes_needed(&id, &state),
                };
                due.push((id, lanes));
            }
            needs = due.iter().cloned().collect();
            Ok::<_, SpoolError>((due, needs))
        })
        .await;
        match scanned {
            Ok(Ok(scanned)) => scanned,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot scan the spool");
                Default::default()
            }
            Err(_) => Default::default(),
        }
    }
}

/// The end of one delivery task, also when it panicked or was aborted:
/// the message is no longer in flight, its permits are released, and then
/// the dispatcher is woken to look at the waiting messages.
struct Done {
    inner: Arc<Inner>,
    id: MessageId,
    held: Option<Held>,
    finished: Arc<Notify>,
}

impl Drop for Done {
    fn drop(&mut self) {
        lock(&self.inner.in_flight).remove(&self.id);
        drop(self.held.take());
        self.finished.notify_one();
    }
}

impl Inner {
    /// The lanes of the routes `id`'s pending recipients use. A message
    /// that cannot be read, or has no recipient left, gets the no-route
    /// lane, so that its attempt reports why or removes it. Blocking.
    fn lanes_needed(&self, id: &MessageId, state: &DeliveryState) -> Vec<usize> {
        let no_route = vec![self.lanes.lane_of(None)];
        let Ok((meta, _)) = self.spool.read(id) else {
            return no_route;
        };
        let pending = (state.pending.clone()).unwrap_or_else(|| meta.meta.rcpt_to.clone());
        let user = meta.meta.auth.as_ref().map(|a| a.authn_id.as_str());
        let lanes: Vec<usize> = route::groups(&self.config.routes, pending, user)
            .into_iter()
            .map(|(route, _)| self.lanes.lane_of(route))
            .collect();
        if lanes.is_empty() {
            no_route
        } else {
            lanes
        }
    }

    /// One attempt at one message, on the lanes it holds.
    async fn deliver(self: &Arc<Self>, id: &MessageId, held: &Held) {
        let spool = self.spool.clone();
        let read_id = id.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let (meta, data) = spool.read(&read_id)?;
            let state = state::load(&spool, &read_id).unwrap_or_else(|error| {
                tracing::warn!(id = %read_id, %error, "unreadable delivery state; starting afresh");
                DeliveryState::default()
            });
            Ok::<_, DeliveryError>((meta, data, state))
        })
        .await;
        let (meta, data, state) = match loaded {
            Ok(Ok(loaded)) => loaded,
            // Delivered and removed meanwhile, or deleted with `queue delete`.
            Ok(Err(DeliveryError::Spool(SpoolError::NotFound(_)))) => return,
            Ok(Err(error)) => {
                tracing::error!(%id, %error, "cannot read spooled message");
                return;
            }
            Err(_) => return,
        };
        if !state.is_due(now_ms()) {
            return;
        }
        // Held by a containment answer or the operator: not delivered
        // until `portcullis queue release`.
        if state.is_held(&meta.meta) {
            return;
        }
        let pending = state
            .pending
            .clone()
            .unwrap_or_else(|| meta.meta.rcpt_to.clone());
        let user = meta.meta.auth.as_ref().map(|a| a.authn_id.as_str());
        let mut results = Vec::new();
        let mut successes = Vec::new();
        let mut held_back = Vec::new();
        for (route, rcpts) in route::groups(&self.config.routes, pending, user) {
            if !held.holds(self.lanes.lane_of(route)) {
                held_back.extend(rcpts);
                continue;
            }
            let (outcomes, action) = match route {
                Some(i) => {
                    self.deliver_route(&self.config.routes[i], id, &meta, &data, &rcpts)
                        .await
                }
                None => (
                    vec![Outcome::NotDelivered(DeliveryError::NoRoute.failure()); rcpts.len()],
                    None,
                ),
            };
            let name = route
                .map(|i| self.config.routes[i].name.as_str())
                .unwrap_or("-");
            for (rcpt, outcome) in rcpts.into_iter().zip(outcomes) {
                log_outcome(id, &rcpt, name, &outcome);
                if let (Outcome::Delivered, Some(action)) = (&outcome, action) {
                    if dsn::wants_success_report(&meta.meta, &rcpt) {
                        successes.push((rcpt.clone(), action));
                    }
                }
                results.push((rcpt, outcome));
            }
        }
        if let (Some(observe), Some(user)) = (&self.observer, user) {
            let accepted = results
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::Delivered))
                .count() as u64;
            let refused = results
                .iter()
                .filter(|(_, o)| {
                    matches!(o, Outcome::NotDelivered(f) if f.permanent && f.remote && f.status.1 == 1)
                })
                .count() as u64;
            if accepted + refused > 0 {
                observe(user, accepted, refused);
            }
        }
        if !successes.is_empty() {
            if let Err(error) = self.report(id, &meta, &data, &successes).await {
                tracing::error!(%id, %error, "cannot spool the success notification");
            }
        }
        let settled = self.settle(id, &meta, &data, state, results, held_back);
        if let Err(error) = settled.await {
            tracing::error!(%id, %error, "cannot record delivery results; the message will be tried again");
        }
    }

    async fn deliver_route(
        self: &Arc<Self>,
        route: &Route,
        id: &MessageId,
        meta: &StoredMeta,
        data: &[u8],
        rcpts: &[String],
    ) -> (Vec<Outcome>, Option<Action>) {
        match &route.transport {
            Transport::Maildir { path } => {
                let count = rcpts.len();
                let (path, id, host, data, rcpts, sender) = (
                    path.clone(),
                    id.to_string(),
                    self.hostname.clone(),
                    data.to_vec(),
                    rcpts.to_vec(),
                    meta.meta.mail_from.clone(),
                );
                let done = tokio::task::spawn_blocking(move || {
                    rcpts
                        .iter()
                        .map(|recipient| {
                            let envelope = maildir::Envelope {
                                sender: &sender,
                                recipient,
                            };
                            match maildir::deliver(&path, envelope, &id, &host, &data) {
                                Ok(_) => Outcome::Delivered,
                                Err(e) => Outcome::NotDelivered(e.failure()),
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                let outcomes =
                    done.unwrap_or_else(|_| vec![Outcome::NotDelivered(failure_local()); count]);
                (outcomes, Some(Action::Delivered))
            }
            Transport::Smtp(relay) => self.relay(route, relay, false, meta, data, rcpts).await,
            Transport::Lmtp(relay) => self.relay(route, relay, true, meta, data, rcpts).await,
        }
    }

    async fn relay(
        &self,
        route: &Route,
        relay: &Relay,
        lmtp: bool,
        meta: &StoredMeta,
        data: &[u8],
        rcpts: &[String],
    ) -> (Vec<Outcome>, Option<Action>) {
        // A next hop that offers DSN took the requests with the message
        // and reports success itself; one that does not leaves it to us.
        let relayed = |client: &Client| (!client.offers_dsn()).then_some(Action::Relayed);
        let user = meta.meta.auth.as_ref().map(|a| a.authn_id.as_str());
        let body = match route.identity {
            Identity::Header => with_identity_header(data, user),
            _ => data.to_vec(),
        };
        let xclient_user = if route.identity == Identity::Xclient {
            user
        } else {
            None
        };
        let env = Envelope {
            mail_from: &meta.meta.mail_from,
            rcpt_to: rcpts,
            eight_bit: meta.meta.body.eq_ignore_ascii_case("8bitmime"),
            smtputf8: meta.meta.smtputf8,
            dsn: meta.meta.dsn.as_ref(),
        };
        // A pooled connection may have been closed by the next hop while
        // idle; on any error try the next one, then a fresh connection.
        while xclient_user.is_none() {
            let Some(mut client) = self.take_pooled(&route.name) else {
                break;
            };
            match client.send(&env, &body).await {
                Ok(outcomes) => {
                    let action = relayed(&client);
                    self.give_back(route, client).await;
                    return (outcomes, action);
                }
                Err(error) => {
                    tracing::debug!(route = %route.name, %error, "reused connection failed; trying another")
                }
            }
        }
        let all_failed =
            |e: DeliveryError| (vec![Outcome::NotDelivered(e.failure()); rcpts.len()], None);
        let settings = Settings {
            relay,
            lmtp,
            helo_name: &self.hostname,
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.command_timeout,
            tls: self.tls.get(relay),
        };
        let mut client = match Client::connect(&settings).await {
            Ok(client) => client,
            Err(error) => return all_failed(error),
        };
        if let Some(user) = xclient_user {
            match client.xclient_login(user, &self.hostname).await {
                Ok(true) => {}
                // Failing open would hand the next hop a message with no
                // submitter, which it may then relay as anyone's.
                Ok(false) if route.identity_required => {
                    client.quit().await;
                    return all_failed(DeliveryError::XclientNotOffered);
                }
                Ok(false) => {
                    tracing::warn!(route = %route.name, "next hop does not offer XCLIENT LOGIN; identity not passed (identity_required = false)")
                }
                Err(error) => return all_failed(error),
            }
        }
        match client.send(&env, &body).await {
            Ok(outcomes) => {
                let action = relayed(&client);
                self.give_back(route, client).await;
                (outcomes, action)
            }
            Err(error) => all_failed(error),
        }
    }

    fn take_pooled(&self, route: &str) -> Option<Client> {
        let mut pool = lock(&self.pool);
        let idle = pool.get_mut(route)?;
        while let Some(client) = idle.pop() {
            if client.idle_since.elapsed() < POOL_IDLE {
                return Some(client);
            }
        }
        None
    }

    async fn give_back(&self, route: &Route, client: Client) {
        if !client.reusable() {
            client.quit().await;
            return;
        }
        let surplus = {
            let mut pool = lock(&self.pool);
            let idle = pool.entry(route.name.clone()).or_default();
            idle.retain(|c| c.idle_since.elapsed() < POOL_IDLE);
            if idle.len() < route.workers {
                idle.push(client);
                None
            } else {
                Some(client)
            }
        };
        if let Some(client) = surplus {
            client.quit().await;
        }
    }

    /// Bounce, then remove or reschedule; see the module docs for the order.
    /// Recipients `held_back` (their route was busy) stay pending without
    /// counting an attempt: if nothing else waits for a retry, the message
    /// stays due.
    async fn settle(
        &self,
        id: &MessageId,
        meta: &StoredMeta,
        data: &[u8],
        mut state: DeliveryState,
        results: Vec<(String, Outcome)>,
        held_back: Vec<String>,
    ) -> Result<(), DeliveryError> {
        let now = now_ms();
        let (mut pending, failed) = classify(id, &mut state, results, now, self.config.max_age);
        // NOTIFY=NEVER, or a NOTIFY without FAILURE: failed, not reported.
        let (failed, unreported): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|(rcpt, _)| dsn::wants_failure_report(&meta.meta, rcpt));
        for (rcpt, failure) in unreported {
            tracing::info!(%id, %rcpt, status = %failure.status, "failed; no bounce (NOTIFY)");
            state.bounced.push(rcpt);
        }
        if !failed.is_empty() {
            match self.bounce(id, meta, data, &failed).await {
                Ok(()) => state.bounced.extend(failed.into_iter().map(|(r, _)| r)),
                Err(error) => {
                    tracing::error!(%id, %error, "cannot spool the bounce; will try again");
                    pending.extend(failed.into_iter().map(|(r, _)| r));
                }
            }
        }
        let spool = self.spool.clone();
        let id = id.clone();
        if pending.is_empty() && held_back.is_empty() {
            tokio::task::spawn_blocking(move || spool.remove(&id))
                .await
                .map_err(|_| failure_join())??;
            return Ok(());
        }
        if !pending.is_empty() {
            state.attempts += 1;
            let delay = retry_delay(
                state.attempts,
                self.config.retry_initial,
                self.config.retry_max,
            );
            state.next_attempt_ms = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 2);
            tracing::info!(%id, attempts = state.attempts, retry_in_ms = delay.as_millis() as u64, "deferred");
        }
        pending.extend(held_back);
        state.pending = Some(pending);
        tokio::task::spawn_blocking(move || state::save(&spool, &id, &state))
            .await
            .map_err(|_| failure_join())?
    }

    /// Spools a failure DSN to the sender, or drops it (with a log line)
    /// for `<>`.
    async fn bounce(
        &self,
        id: &MessageId,
        meta: &StoredMeta,
        data: &[u8],
        failed: &[(String, Failure)],
    ) -> Result<(), DeliveryError> {
        let reported: Vec<(String, Action, Failure)> = failed
            .iter()
            .map(|(rcpt, failure)| (rcpt.clone(), Action::Failed, failure.clone()))
            .collect();
        self.spool_report(id, meta, data, &reported).await
    }

    /// Spools a success DSN (NOTIFY=SUCCESS) for recipients delivered here
    /// or relayed to a next hop that does not offer DSN.
    async fn report(
        &self,
        id: &MessageId,
        meta: &StoredMeta,
        data: &[u8],
        successes: &[(String, Action)],
    ) -> Result<(), DeliveryError> {
        let reported: Vec<(String, Action, Failure)> = successes
            .iter()
            .map(|(rcpt, action)| (rcpt.clone(), *action, dsn::success_status(*action)))
            .collect();
        self.spool_report(id, meta, data, &reported).await
    }

    async fn spool_report(
        &self,
        id: &MessageId,
        meta: &StoredMeta,
        data: &[u8],
        failed: &[(String, Action, Failure)],
    ) -> Result<(), DeliveryError> {
        let sender = meta.meta.mail_from.as_str();
        if sender.is_empty() {
            for (rcpt, _, failure) in failed {
                tracing::warn!(%id, %rcpt, diagnostic = %failure.diagnostic, "report on a message with null sender dropped");
            }
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let arrival =
            OffsetDateTime::from_unix_timestamp((id.spooled_at_micros() / 1_000_000) as i64)
                .unwrap_or(now);
        let boundary = format!("{id}/{}", self.hostname);
        let bounce = Bounce {
            hostname: &self.hostname,
            original_id: id.as_str(),
            sender,
            arrival,
            recipients: failed,
            original: data,
            now,
            boundary: &boundary,
            dsn: meta.meta.dsn.as_ref(),
        };
        let (bytes, bounce_meta) = (bounce.render(), bounce.meta(&self.hostname));
        let spool = self.spool.clone();
        let bounce_id = tokio::task::spawn_blocking(move || spool.store(&bounce_meta, &bytes))
            .await
            .map_err(|_| failure_join())??;
        tracing::info!(%id, %bounce_id, %sender, recipients = failed.len(), "bounce spooled");
        Ok(())
    }
}

/// Sorts one attempt's results: delivered (recorded in `state`), pending
/// (retried; the last failure recorded) and failed for good (to bounce);
/// a temporary failure of a message older than `max_age` is failed too.
fn classify(
    id: &MessageId,
    state: &mut DeliveryState,
    results: Vec<(String, Outcome)>,
    now: u64,
    max_age: Duration,
) -> (Vec<String>, Vec<(String, Failure)>) {
    let too_old = expired(id.spooled_at_micros() / 1000, now, max_age);
    let mut pending = Vec::new();
    let mut failed = Vec::new();
    for (rcpt, outcome) in results {
        match outcome {
            Outcome::Delivered => state.delivered.push(rcpt),
            Outcome::NotDelivered(f) if f.permanent => failed.push((rcpt, f)),
            Outcome::NotDelivered(f) if too_old => {
                let diagnostic = format!(
                    "{}; gave up after {} attempts",
                    f.diagnostic,
                    state.attempts + 1
                );
                tracing::warn!(%id, %rcpt, "maximum age reached; bouncing");
                let failure = Failure {
                    permanent: true,
                    status: status::EXPIRED,
                    diagnostic,
                    remote: f.remote,
                };
                failed.push((rcpt, failure));
            }
            Outcome::NotDelivered(f) => {
                pending.push(rcpt);
                state.last_failure = Some(f);
            }
        }
    }
    (pending, failed)
}

fn log_outcome(id: &MessageId, rcpt: &str, route: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Delivered => tracing::info!(%id, %rcpt, %route, result = "delivered", "delivery"),
        Outcome::NotDelivered(f) => {
            let result = if f.permanent { "failed" } else { "deferred" };
            tracing::info!(%id, %rcpt, %route, result, status = %f.status, diagnostic = %f.diagnostic, "delivery");
        }
    }
}

fn failure_local() -> Failure {
    Failure {
        permanent: false,
        status: status::LOCAL,
        diagnostic: "x-portcullis; local error".into(),
        remote: false,
    }
}

fn failure_join() -> DeliveryError {
    DeliveryError::Io {
        during: "blocking task",
        source: std::io::Error::other("task panicked or was cancelled"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Locks a mutex; a poisoned lock still holds consistent data here (sets
/// and maps whose updates are single calls), so it is used anyway.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
