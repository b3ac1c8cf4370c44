//! Every event a script may register, declared once: its namespace, name,
//! arguments, what it returns and whether portcullis calls it. `kumo.on` and
//! `portcullis.on` refuse names not in [`EVENTS`], so a typo fails at load
//! instead of silently never running; `docs/policy.md` lists the same table.

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

const CALLED: [Event; 4] = [
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

const IGNORED: [Event; 16] = kumo_ignored![
    "get_queue_config",
    "get_listener_domain",
    "get_egress_source",
    "get_egress_pool",
    "get_egress_path_config",
    "smtp_server_rewrite_response",
    "smtp_server_ehlo",
    "smtp_server_mail_from",
    "smtp_server_mail_rcpt_to",
    "smtp_server_message_received",
    "smtp_server_connection_accepted",
    "smtp_server_data",
    "http_message_generated",
    "should_enqueue_log_record",
    "message_queued",
    "pre_init",
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
