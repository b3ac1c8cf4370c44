//! Whether a remote dependency (a JWKS URL, an introspection endpoint)
//! answers: one log line when it stops answering and one when it is back,
//! whatever the traffic in between, and a flag the server publishes as a
//! metric.

use std::sync::atomic::{AtomicBool, Ordering};

/// The state of one remote endpoint.
#[derive(Debug)]
pub(crate) struct Reachability {
    /// What it is, for the log ("JWKS", "introspection").
    what: &'static str,
    url: String,
    down: AtomicBool,
}

impl Reachability {
    pub(crate) fn new(what: &'static str, url: &str) -> Self {
        Reachability {
            what,
            url: url.to_string(),
            down: AtomicBool::new(false),
        }
    }

    /// A call was answered.
    pub(crate) fn answered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::warn!(what = self.what, url = %self.url, "token issuer answers again");
        }
    }

    /// A call got no usable answer (no connection, a timeout, an HTTP
    /// error status, a body that does not parse).
    pub(crate) fn failed(&self, error: &str) {
        if self.down.swap(true, Ordering::Relaxed) {
            tracing::debug!(what = self.what, url = %self.url, %error, "token issuer still unreachable");
        } else {
            tracing::error!(what = self.what, url = %self.url, %error, "token issuer unreachable; its logins get 454 until it answers");
        }
    }

    /// Whether the last call was answered.
    pub(crate) fn up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_last_call() {
        let r = Reachability::new("JWKS", "https://id.example/jwks.json");
        assert!(r.up());
        r.failed("refused");
        r.failed("refused");
        assert!(!r.up());
        r.answered();
        assert!(r.up());
    }
}
