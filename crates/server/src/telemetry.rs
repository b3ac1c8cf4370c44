//! Every metric the server exports, declared once: name, kind and meaning.
//! Code records through these names; `describe` publishes the help texts.

/// Connections accepted, by listener.
pub const CONNECTIONS: &str = "portcullis_connections_total";
/// Connections open now.
pub const CONNECTIONS_ACTIVE: &str = "portcullis_connections_active";
/// Connections refused at the limit.
pub const CONNECTIONS_REFUSED: &str = "portcullis_connections_refused_total";
/// AUTH attempts, by mechanism and result (accepted, rejected, deferred).
pub const AUTH_ATTEMPTS: &str = "portcullis_auth_attempts_total";
/// Time to decide an AUTH attempt (store look-up and verification).
pub const AUTH_DURATION: &str = "portcullis_auth_duration_seconds";
/// Verified-credential cache look-ups, by result (hit, miss). Recorded by
/// the auth crate.
pub const AUTH_CACHE: &str = "portcullis_auth_cache_total";
/// Slow verifications refused because every hash slot stayed taken, by
/// reason (queue_full: refused at once; timed_out: after `slot_wait`).
/// Recorded by the auth crate.
pub const AUTH_VERIFICATIONS_REFUSED: &str = "portcullis_auth_verifications_refused_total";
/// Messages durably spooled.
pub const MESSAGES_SPOOLED: &str = "portcullis_messages_spooled_total";
/// Spool writes that failed (answered 451).
pub const SPOOL_FAILURES: &str = "portcullis_spool_failures_total";
/// Time to store a message durably (writes, fsyncs, renames).
pub const SPOOL_WRITE_DURATION: &str = "portcullis_spool_write_seconds";

/// Connections refused or closed by the defence, by reason (banned,
/// per_address, per_network, rate, slow_command, slow_data).
pub const CONNECTIONS_LIMITED: &str = "portcullis_connections_limited_total";
/// Addresses banned after repeated failures.
pub const BANS: &str = "portcullis_bans_total";
/// The delay put before each failed AUTH reply.
pub const AUTH_FAILURE_DELAY: &str = "portcullis_auth_failure_delay_seconds";
/// AUTH attempts answered `454` because the user is cooling down.
pub const AUTH_COOLDOWNS: &str = "portcullis_auth_cooldowns_total";
/// Failures repeating the same wrong password (stale clients).
pub const AUTH_STALE: &str = "portcullis_auth_stale_password_total";

/// Connections closed at the PROXY header, by reason (untrusted, malformed).
pub const PROXY_REFUSED: &str = "portcullis_proxy_refused_total";

/// 1 while the credential store answers in time, 0 while it is stalled.
pub const STORE_UP: &str = "portcullis_store_up";

/// 1 while the limits backend (Redis) answers, 0 while counting locally.
pub const LIMITS_BACKEND_UP: &str = "portcullis_limits_backend_up";

/// 1 while the token issuer's JWKS URL and introspection endpoint answer.
pub const OAUTH_ISSUER_UP: &str = "portcullis_oauth_issuer_up";

/// 1 while Vault answers the policy's `kumo.secrets.load`, 0 while not.
pub const VAULT_UP: &str = "portcullis_vault_up";

/// MAIL or RCPT refused at a sending limit, by scope and quantity.
pub const SENDING_LIMITED: &str = "portcullis_sending_limited_total";
/// Compromise signals that fired, by signal and answer.
pub const IDENTITY_SIGNALS: &str = "portcullis_identity_signals_total";
/// Logins and messages refused or held by a containment answer, by answer.
pub const CONTAINMENT_ACTIONS: &str = "portcullis_containment_actions_total";
/// Webhook deliveries, by result (delivered, failed, dropped).
pub const WEBHOOK_DELIVERIES: &str = "portcullis_webhook_deliveries_total";

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the server exports, in one table: the Grafana dashboard
/// in `docs/grafana/portcullis.json` is checked against it.
pub const ALL: &[(&str, Kind)] = &[
    (CONNECTIONS, Kind::Counter),
    (CONNECTIONS_ACTIVE, Kind::Gauge),
    (CONNECTIONS_REFUSED, Kind::Counter),
    (AUTH_ATTEMPTS, Kind::Counter),
    (AUTH_DURATION, Kind::Histogram),
    (AUTH_CACHE, Kind::Counter),
    (AUTH_VERIFICATIONS_REFUSED, Kind::Counter),
    (MESSAGES_SPOOLED, Kind::Counter),
    (SPOOL_FAILURES, Kind::Counter),
    (SPOOL_WRITE_DURATION, Kind::Histogram),
    (CONNECTIONS_LIMITED, Kind::Counter),
    (BANS, Kind::Counter),
    (AUTH_FAILURE_DELAY, Kind::Histogram),
    (AUTH_COOLDOWNS, Kind::Counter),
    (AUTH_STALE, Kind::Counter),
    (PROXY_REFUSED, Kind::Counter),
    (STORE_UP, Kind::Gauge),
    (LIMITS_BACKEND_UP, Kind::Gauge),
    (OAUTH_ISSUER_UP, Kind::Gauge),
    (VAULT_UP, Kind::Gauge),
    (SENDING_LIMITED, Kind::Counter),
    (IDENTITY_SIGNALS, Kind::Counter),
    (CONTAINMENT_ACTIONS, Kind::Counter),
    (WEBHOOK_DELIVERIES, Kind::Counter),
];

/// Histogram buckets for latencies, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Publishes the help text of every metric.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(CONNECTIONS, "Connections accepted, by listener");
    describe_gauge!(CONNECTIONS_ACTIVE, "Connections open now");
    describe_gauge!(
        VAULT_UP,
        "1 while Vault answers the policy's secret look-ups, 0 while not"
    );
    describe_gauge!(
        OAUTH_ISSUER_UP,
        "1 while the token issuer's JWKS URL and introspection endpoint answer, 0 while not"
    );
    describe_gauge!(
        LIMITS_BACKEND_UP,
        "1 while the shared limits backend (Redis) answers, 0 while counting locally"
    );
    describe_gauge!(
        STORE_UP,
        "1 while the credential store answers within its timeout, 0 while stalled"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at the connection limit"
    );
    describe_counter!(AUTH_ATTEMPTS, "AUTH attempts by mechanism and result");
    describe_histogram!(
        AUTH_DURATION,
        Unit::Seconds,
        "Time to decide an AUTH attempt"
    );
    describe_counter!(AUTH_CACHE, "Verified-credential cache look-ups by result");
    describe_counter!(
        AUTH_VERIFICATIONS_REFUSED,
        "Slow verifications refused under load (454), by reason (queue_full, timed_out)"
    );
    describe_counter!(
        CONNECTIONS_LIMITED,
        "Connections refused by the brute-force defence, by reason"
    );
    describe_counter!(BANS, "Addresses banned after repeated failures");
    describe_histogram!(
        AUTH_FAILURE_DELAY,
        Unit::Seconds,
        "Delay before each failed AUTH reply"
    );
    describe_counter!(
        AUTH_COOLDOWNS,
        "AUTH attempts refused during a user cool-down"
    );
    describe_counter!(AUTH_STALE, "Failures repeating the same wrong password");
    describe_counter!(
        PROXY_REFUSED,
        "Connections closed at the PROXY header, by reason"
    );
    describe_counter!(
        SENDING_LIMITED,
        "MAIL or RCPT refused with 451 at a sending limit, by scope and quantity"
    );
    describe_counter!(
        IDENTITY_SIGNALS,
        "Signals that an account was taken, by signal and answer"
    );
    describe_counter!(
        CONTAINMENT_ACTIONS,
        "Logins, commands and messages refused or held by a containment answer, by answer"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Containment webhook posts, by result (delivered, failed, dropped)"
    );
    describe_counter!(MESSAGES_SPOOLED, "Messages durably spooled");
    describe_counter!(SPOOL_FAILURES, "Spool writes that failed");
    describe_histogram!(
        SPOOL_WRITE_DURATION,
        Unit::Seconds,
        "Time to store a message durably"
    );
}

#[cfg(test)]
mod tests {
    use super::{Kind, ALL};

    /// Every `portcullis_*` name in `text`, histogram suffixes removed.
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find("portcullis_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_grafana_dashboard_names_every_metric_and_only_those() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/grafana/portcullis.json"
        );
        let text = std::fs::read_to_string(path).expect("the dashboard is in docs/grafana");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let mut exprs = String::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push_str(target["expr"].as_str().unwrap_or_default());
                exprs.push('\n');
            }
        }
        let named = names_in(&exprs);
        let exported: std::collections::BTreeSet<String> =
            ALL.iter().map(|(name, _)| name.to_string()).collect();
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard names metrics the server does not export: {unknown:?}"
        );
        let missing: Vec<_> = exported.difference(&named).collect();
        assert!(missing.is_empty(), "the dashboard lacks: {missing:?}");
        for (name, kind) in ALL {
            if *kind == Kind::Histogram {
                assert!(
                    exprs.contains(&format!("{name}_bucket")),
                    "{name} is a histogram"
                );
            }
        }
    }

    #[test]
    fn every_metric_in_the_table_is_used_in_the_code() {
        // The table is the one place metric names live; a name nobody
        // records would be an empty panel.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut code = String::new();
        for entry in std::fs::read_dir(dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n != "telemetry.rs") {
                code.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/../auth/src/lib.rs");
        code.push_str(&std::fs::read_to_string(auth).unwrap_or_default());
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/telemetry.rs"))
                .expect("telemetry.rs");
        // And every declared name is in the table (the dashboard follows it).
        for line in source
            .lines()
            .filter(|l| l.starts_with("pub const") && l.contains("\"portcullis_"))
        {
            let name = line.split('"').nth(1).unwrap_or_default();
            assert!(ALL.iter().any(|(n, _)| *n == name), "{name} is not in ALL");
        }
        for (name, _) in ALL {
            let constant = source
                .lines()
                .find(|l| l.contains(&format!("\"{name}\"")) && l.starts_with("pub const"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|c| c.trim_end_matches(':').to_string())
                .expect("each name has a constant");
            assert!(
                code.contains(&format!("telemetry::{constant}"))
                    || code.contains(&format!("\"{name}\"")),
                "{name} ({constant}) is never recorded"
            );
        }
    }
}
