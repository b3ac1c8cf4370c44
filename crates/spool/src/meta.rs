//! The metadata stored beside each message as `<id>.json`.

use serde::{Deserialize, Serialize};

/// What the server knows about a message when it is accepted.
///
/// Field names are the JSON keys on disk; they are a stable format read by
/// the CLI and the delivery stage, so rename nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// RFC 3339 time of acceptance, filled by the caller.
    pub received_at: String,
    /// Reverse-path without `<>`; `""` for the null sender.
    pub mail_from: String,
    /// Forward-paths without `<>`, in RCPT order.
    pub rcpt_to: Vec<String>,
    /// `"7bit"` or `"8bitmime"` (the BODY= parameter).
    pub body: String,
    /// The SIZE= parameter of MAIL FROM, if given.
    pub declared_size: Option<u64>,
    /// The HELO/EHLO argument, if any.
    pub helo: Option<String>,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// The local `ip:port` the client connected to.
    pub server_addr: String,
    /// The name of the listener that accepted the connection.
    pub listener: String,
    /// The TLS session, if the message arrived over TLS.
    pub tls: Option<TlsMeta>,
    /// The authenticated identity, if the client authenticated.
    pub auth: Option<AuthMeta>,
    /// The AUTH= parameter of MAIL FROM (RFC 4954 §5) as received, `<>` included.
    pub mail_auth_param: Option<String>,
    /// What a trusted proxy said with XCLIENT; `client_addr` is then the
    /// client it named, and `xclient.proxy_addr` the proxy itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xclient: Option<XclientMeta>,
    /// The connection metadata of the policy script's hooks
    /// (`conn_meta:set_meta`, and the facts portcullis presets there such
    /// as `reception_protocol`), copied into the message as KumoMTA does.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// Why the message is held (not delivered until released): a
    /// containment answer for its sender's identity. The delivery state
    /// may override it (`portcullis queue hold|release --user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// MAIL FROM had `SMTPUTF8` (RFC 6531): the envelope or the headers may
    /// be UTF-8, and a next hop must offer SMTPUTF8 to take it. Absent in
    /// metadata written before SMTPUTF8 was offered: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    /// The DSN requests of the submission (RFC 3461), if it made any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn: Option<DsnMeta>,
}

/// What the client asked of delivery status notifications (RFC 3461),
/// values decoded from xtext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsnMeta {
    /// `RET=`: `"FULL"` or `"HDRS"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// `ENVID=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// The recipients that gave NOTIFY= or ORCPT=.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<RcptDsnMeta>,
}

impl DsnMeta {
    /// The DSN parameters `rcpt` was given, if any.
    pub fn recipient(&self, rcpt: &str) -> Option<&RcptDsnMeta> {
        self.recipients.iter().find(|r| r.rcpt == rcpt)
    }
}

/// One recipient's DSN parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptDsnMeta {
    /// The forward-path, as in `rcpt_to`.
    pub rcpt: String,
    /// `NOTIFY=` as sent on: `"NEVER"` or e.g. `"SUCCESS,FAILURE"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// `ORCPT=`, decoded: `addr-type;address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// The XCLIENT facts of a proxied session (absent fields were not given
/// or were `[UNAVAILABLE]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XclientMeta {
    /// The proxy's own `ip:port`: the TCP peer that sent XCLIENT.
    pub proxy_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// The login the proxy vouched for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<String>,
}

/// The TLS session a message arrived over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsMeta {
    /// Protocol version, e.g. `"TLSv1.3"`.
    pub version: String,
    /// Cipher suite name.
    pub cipher: String,
    /// The client certificate the client sent, if any: verified by our CA
    /// unless `verified` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertMeta>,
}

/// A TLS client certificate (SASL EXTERNAL; or one a listener with
/// `client_certificate = "request"` took without a CA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertMeta {
    /// Whether it chained to `[tls] client_ca`. Records written before
    /// this field existed hold only verified certificates.
    #[serde(default = "verified_by_default")]
    pub verified: bool,
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// SHA-256 of the DER certificate, colon-separated hex.
    pub sha256: String,
}

fn verified_by_default() -> bool {
    true
}

/// The SASL identity of the submitting client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthMeta {
    /// The authentication identity (whose credentials were checked).
    pub authn_id: String,
    /// The authorization identity (who the client acts as).
    pub authz_id: String,
    /// The SASL mechanism, e.g. `"PLAIN"`.
    pub mechanism: String,
    /// Data the policy script attached when it accepted the AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<serde_json::Value>,
    /// The app password the client logged in with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialMeta>,
}

/// Which app password submitted a message (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialMeta {
    pub id: String,
    pub label: String,
}

/// The JSON on disk: the [`MessageMeta`] plus the spool's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    /// The message id (also the file stem).
    pub id: String,
    /// Size of the `.eml` in bytes.
    pub size: u64,
    /// What the server knew about the message.
    #[serde(flatten)]
    pub meta: MessageMeta,
}

/// The JSON of a [`StoredMeta`] made of its parts, without a copy of the
/// metadata: `{"id":..,"size":..,` then the fields of `meta`, the same
/// bytes as serialising the `StoredMeta`. Written by hand rather than with
/// `#[serde(flatten)]`, which goes through serde's map path (buffered
/// keys, one call per entry) and cost about a third more per message.
pub(crate) fn stored_json(
    id: &str,
    size: u64,
    meta: &MessageMeta,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = Vec::with_capacity(512);
    json.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut json, id)?;
    json.extend_from_slice(b",\"size\":");
    json.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
    json.push(b',');
    let start = json.len();
    serde_json::to_writer(&mut json, meta)?;
    // `meta` serialised as `{"received_at":...}`: drop its opening brace
    // (it always has fields, so the comma above is followed by one).
    json.remove(start);
    Ok(json)
}
