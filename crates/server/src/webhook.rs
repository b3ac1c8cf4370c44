//! The containment webhook: an HTTP POST of a JSON document for every
//! answer to a compromise signal, signed with HMAC-SHA-256 over the body
//! (`X-Portcullis-Signature: sha256=<hex>`, with the time it was signed
//! in `X-Portcullis-Timestamp`, part of the signed bytes as `ts.body`).
//!
//! Sessions never wait for it: [`Webhook::send`] puts the document on a
//! bounded queue and returns; one thread of its own posts them in order,
//! each attempt bounded by [`TIMEOUT`], retried with doubling back-off up
//! to [`ATTEMPTS`] times. A full queue drops the document (counted and
//! logged): an endpoint that is down must not grow memory without bound.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::telemetry;

/// Documents waiting to be posted.
const QUEUE: usize = 1024;
/// One attempt's limit.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per document.
const ATTEMPTS: u32 = 6;
/// The first retry's wait; it doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct Webhook {
    queue: SyncSender<serde_json::Value>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts the posting thread for `url`, signing with `secret`.
    pub(crate) fn start(url: String, secret: Option<String>) -> Webhook {
        let (queue, documents) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("portcullis-webhook".into())
            .spawn(move || post_all(&url, secret.as_deref(), documents));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the webhook thread; answers will not be posted");
        }
        Webhook { queue }
    }

    /// Queues `document`; never blocks.
    pub(crate) fn send(&self, document: serde_json::Value) {
        match self.queue.try_send(document) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                tracing::error!("webhook queue full or stopped; dropping a containment notice");
                metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "result" => "dropped")
                    .increment(1);
            }
        }
    }
}

/// The signature header's value for `body` signed at `timestamp`.
pub(crate) fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_all(url: &str, secret: Option<&str>, documents: Receiver<serde_json::Value>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    while let Ok(document) = documents.recv() {
        let body = document.to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let timestamp = portcullis_limits::Timestamp::now().millis().to_string();
            let mut request = agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Portcullis-Timestamp", &timestamp);
            if let Some(secret) = secret {
                let signed = signature(secret, &timestamp, body.as_bytes());
                request = request.header("X-Portcullis-Signature", &signed);
            }
            match request.send(body.as_bytes()) {
                Ok(response) if response.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(response) => {
                    tracing::warn!(
                        status = response.status().as_u16(),
                        attempt,
                        "webhook refused a containment notice"
                    )
                }
                Err(error) => tracing::warn!(%error, attempt, "webhook post failed"),
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(backoff);
                backoff *= 2;
            }
        }
        let result = if delivered { "delivered" } else { "failed" };
        metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "result" => result).increment(1);
        if !delivered {
            tracing::error!("webhook gave up on a containment notice");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_covers_the_timestamp_and_body() {
        let a = super::signature("k", "1", b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, super::signature("k", "2", b"{}"));
        assert_ne!(a, super::signature("j", "1", b"{}"));
    }
}
