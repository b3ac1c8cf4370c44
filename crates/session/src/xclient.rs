//! XCLIENT (Postfix's extension, as Nodemailer's smtp-server speaks it): a
//! proxy in front of us tells who the real client is, and with `LOGIN=`
//! that the client already authenticated with the proxy.
//!
//! Whether this connection may send XCLIENT is decided by the driver (the
//! peer address against the listener's trusted networks) and handed in as
//! [`crate::ConnectionInfo::xclient_trusted`]; a session without that trust
//! neither advertises XCLIENT nor obeys it (`550 5.7.0`). Like Postfix, a
//! successful XCLIENT resets the SMTP state and answers with a fresh `220`
//! greeting, after which the proxy greets again (TLS state is kept).

use portcullis_proto::command::{XclientAttribute, XclientAttributes};
use portcullis_proto::Reply;

use crate::effect::Effect;
use crate::session::{Session, Step};

/// What the proxy said about the real client. Each field keeps the last
/// value given; `[UNAVAILABLE]` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xclient {
    /// The client's host name.
    pub name: Option<String>,
    /// The client's IP address.
    pub addr: Option<String>,
    /// The client's port.
    pub port: Option<String>,
    /// `SMTP` or `ESMTP`.
    pub proto: Option<String>,
    /// The HELO/EHLO name the client gave the proxy.
    pub helo: Option<String>,
    /// The user the proxy authenticated: the session counts as
    /// authenticated as this user.
    pub login: Option<String>,
    /// The address the client connected to.
    pub dest_addr: Option<String>,
    /// The port the client connected to.
    pub dest_port: Option<String>,
}

impl Xclient {
    fn apply(&mut self, attributes: XclientAttributes) {
        for (attribute, value) in attributes {
            let field = match attribute {
                XclientAttribute::Name => &mut self.name,
                XclientAttribute::Addr => &mut self.addr,
                XclientAttribute::Port => &mut self.port,
                XclientAttribute::Proto => &mut self.proto,
                XclientAttribute::Helo => &mut self.helo,
                XclientAttribute::Login => &mut self.login,
                XclientAttribute::DestAddr => &mut self.dest_addr,
                XclientAttribute::DestPort => &mut self.dest_port,
            };
            *field = value;
        }
    }
}

/// The EHLO keyword: `XCLIENT NAME ADDR PORT ...`.
pub(crate) fn keyword() -> String {
    let names: Vec<&str> = XclientAttribute::ALL.iter().map(|a| a.name()).collect();
    format!("XCLIENT {}", names.join(" "))
}

/// `XCLIENT attr=value ...`.
pub(crate) fn xclient(
    session: &mut Session,
    attributes: XclientAttributes,
    out: &mut Vec<u8>,
) -> Step {
    if !session.conn.xclient_trusted {
        Reply::xclient_refused().write_to(out);
        return Step::Continue;
    }
    if session.transaction.is_some() {
        Reply::xclient_in_transaction().write_to(out);
        return Step::Continue;
    }
    let gives_login = attributes
        .iter()
        .any(|(attribute, _)| *attribute == XclientAttribute::Login);
    let facts = session.xclient.get_or_insert_with(Xclient::default);
    facts.apply(attributes);
    let login = facts.login.clone().filter(|_| gives_login);
    if gives_login {
        // The proxy's word replaces whatever this connection proved itself,
        // and the senders the previous user owned go with it.
        session.identity = None;
        session.sender_rule = None;
    }
    session.helo = None;
    match login {
        // Stop before any pipelined MAIL: the driver asks the policy about
        // the named user and restricts its senders first; the greeting (or
        // the refusal) waits for that answer.
        Some(login) => Step::Effect(Effect::XclientLogin {
            login: session.config.username_profile.canonical(&login),
        }),
        None => {
            Reply::greeting(&session.config.hostname).write_to(out);
            Step::Continue
        }
    }
}

impl Session {
    /// The driver's answer to [`Effect::XclientLogin`]: `None` when the
    /// login stands (a fresh `220`), else the reply refusing it. A refused
    /// login leaves the session unauthenticated; the proxy's other facts
    /// (the client's address) stay, so the client is still counted as the
    /// one the proxy named.
    pub fn xclient_login_finished(&mut self, refusal: Option<Reply>, out: &mut Vec<u8>) {
        match refusal {
            None => Reply::greeting(&self.config.hostname).write_to(out),
            Some(reply) => {
                if let Some(facts) = self.xclient.as_mut() {
                    facts.login = None;
                }
                reply.write_to(out);
            }
        }
    }
}
