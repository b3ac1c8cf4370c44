//! Every event a script may register, declared once: its namespace, name,
//! arguments, what it returns and whether portcullis calls it. `kumo.on` and
//! `portcullis.on` refuse names not declared here, so a typo fails at load
//! instead of silently never running. KumoMTA's configuration functions
//! that mean nothing here are declared here too ([`KUMO_CONFIGURATION`]).
//! `docs/policy.md` lists the same names (a test checks it names them all).

/// Which table's `on` registers the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Kumo,
    Portcullis,
}

/// Whether portcullis calls a registered handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Called as documented.
    Called,
    /// Called once, right after the script loads (KumoMTA's `init`).
    AtLoad,
    /// Accepted so KumoMTA configs load, never called: portcullis has no
    /// queues, egress or HTTP listener.
    Ignored,
}

/// One event.
#[derive(Debug)]
pub struct Event {
    pub namespace: Namespace,
    pub name: &'static str,
    pub arguments: &'static str,
    pub returns: &'static str,
    pub support: Support,
}

/// The general AUTH decision.
pub const SMTP_SERVER_AUTH: &str = "smtp_server_auth";
/// KumoMTA's PLAIN/LOGIN check.
pub const SMTP_SERVER_AUTH_PLAIN: &str = "smtp_server_auth_plain";
/// KumoMTA's start-up event.
pub const INIT: &str = "init";

/// `portcullis.mechanism(name, f)`: not an event (`on` refuses it) but a
/// SASL mechanism the script implements; declared here with the events so
/// the script API is described in one place.
pub const MECHANISM: Event = Event {
    namespace: Namespace::Portcullis,
    name: "mechanism",
    arguments: "auth {mechanism, step, response}, conn {…as smtp_server_auth…}",
    returns: "portcullis.reply(challenge) (334, then called again with step + 1) | portcullis.accept{user=, authz=, data=} | portcullis.reject{…} | portcullis.defer{…}",
    support: Support::Called,
};

macro_rules! kumo_ignored {
    ($($name:literal),* $(,)?) => {
        [$(Event {
            namespace: Namespace::Kumo,
            name: $name,
            arguments: "(KumoMTA)",
            returns: "(KumoMTA)",
            support: Support::Ignored,
        }),*]
    };
}

/// A message was received, before it is spooled.
pub const SMTP_SERVER_MESSAGE_RECEIVED: &str = "smtp_server_message_received";

/// A compromise signal fired for an identity.
pub const IDENTITY_SUSPECT: &str = "portcullis_identity_suspect";

const CALLED: [Event; 5] = [
    Event {
        namespace: Namespace::Portcullis,
        name: IDENTITY_SUSPECT,
        arguments: "suspect {identity, signal, answer, evidence {addresses, count, threshold, first_ms, last_ms}, spared, at_ms}",
        returns: "nil (keep the configured answer) | \"log\" | \"hold\" | \"defer\" | \"suspend\"",
        support: Support::Called,
    },
    Event {
        namespace: Namespace::Portcullis,
        name: SMTP_SERVER_AUTH,
        arguments: "auth {mechanism, user, password, authzid, verified}, conn {client_ip, client_port, server_ip, server_port, helo, listener, tls, meta}",
        returns: "portcullis.accept{user=, authz=, data=} | portcullis.reject{message=, code=, enhanced=, disconnect=} | portcullis.defer{…} | nil (reject)",
        support: Support::Called,
    },
    Event {
        namespace: Namespace::Portcullis,
        name: SMTP_SERVER_MESSAGE_RECEIVED,
        arguments: "msg {mail_from, rcpt_to, size, helo, authn_id, authz_id, mechanism, user_data}, conn {…as smtp_server_auth…}",
        returns: "nil/true (spool it) | portcullis.reject{message=, code=, enhanced=} (550 5.7.1) | portcullis.defer{…} (451 4.7.1)",
        support: Support::Called,
    },
    Event {
        namespace: Namespace::Kumo,
        name: SMTP_SERVER_AUTH_PLAIN,
        arguments: "authz, authc, password, conn_meta",
        returns: "boolean (true: 235, false: 535)",
        support: Support::Called,
    },
    Event {
        namespace: Namespace::Kumo,
        name: INIT,
        arguments: "()",
        returns: "nothing",
        support: Support::AtLoad,
    },
];

/// KumoMTA's events that mean nothing here (portcullis has no queues,
/// egress, HTTP listener, log hooks, proxy or traffic shaping): accepted so
/// whole KumoMTA policy files load, reported once at load, never called.
///
/// The names are those of KumoMTA's reference manual, "Events"
/// (docs.kumomta.com/reference/events, as of the 2025 releases), plus
/// `smtp_server_mail_rcpt_to`, the name older releases used for
/// `smtp_server_rcpt_to`, and `message_queued`, which earlier portcullis
/// releases accepted. KumoMTA's `smtp_server_message_received` is
/// listed here too: portcullis's own message hook has other arguments
/// (`portcullis.on`, see [`SMTP_SERVER_MESSAGE_RECEIVED`]).
const IGNORED: [Event; 33] = kumo_ignored![
    "get_acl_definition",
    "get_egress_path_config",
    "get_egress_pool",
    "get_egress_source",
    "get_listener_domain",
    "get_queue_config",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "pre_init",
    "proxy_init",
    "proxy_server_auth_rfc1929",
    "rebind_message",
    "requeue_message",
    "should_enqueue_log_record",
    "shutdown_logging",
    "smtp_client_rewrite_delivery_status",
    "smtp_server_connection_accepted",
    "smtp_server_data",
    "smtp_server_ehlo",
    "smtp_server_get_dynamic_parameters",
    "smtp_server_mail_from",
    "smtp_server_mail_rcpt_to",
    "smtp_server_message_deferred_inject",
    "smtp_server_message_received",
    "smtp_server_rcpt_to",
    "smtp_server_rewrite_response",
    "smtp_server_split_transaction",
    "spool_message_enumerated",
    "throttle_insert_ready_queue",
    "tsa_init",
    "tsa_load_shaping_data",
    "xfer_message_received",
    "message_queued",
];

/// KumoMTA's `kumo.*` functions that configure what portcullis does not
/// have (listeners come from portcullis's own config; there is no spool
/// policy, queue, egress, log hook or bounce classifier to set up). They
/// exist so `init` bodies run through: each returns its first argument
/// (a `make_*` result may be returned from an ignored event) and is
/// reported once at load. Any other `kumo.*` name does not exist, so a
/// typo is an error. Names from KumoMTA's reference manual, "module kumo"
/// (docs.kumomta.com/reference/kumo).
pub const KUMO_CONFIGURATION: &[&str] = &[
    "configure_accounting_db_path",
    "configure_bounce_classifier",
    "configure_local_logs",
    "configure_log_hook",
    "configure_redis_throttles",
    "define_spool",
    "make_egress_path",
    "make_egress_pool",
    "make_egress_source",
    "make_listener_domain",
    "make_queue_config",
    "set_config_monitor_globs",
    "set_diagnostic_log_filter",
    "set_httpinject_recipient_rate_limit",
    "set_httpinject_threads",
    "set_lruttl_cache_capacity",
    "set_max_lua_context_age",
    "set_max_lua_context_use_count",
    "set_max_spare_lua_contexts",
    "set_memory_hard_limit",
    "set_memory_low_thresh",
    "set_memory_soft_limit",
    "set_qmaint_threads",
    "set_readyq_threads",
    "set_spoolin_threads",
    "start_esmtp_listener",
    "start_http_listener",
];

/// Looks an event up.
pub fn find(namespace: Namespace, name: &str) -> Option<&'static Event> {
    CALLED
        .iter()
        .chain(IGNORED.iter())
        .find(|e| e.namespace == namespace && e.name == name)
}

/// Every declared event, for docs and diagnostics.
pub fn all() -> impl Iterator<Item = &'static Event> {
    CALLED.iter().chain(IGNORED.iter())
}
