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
/// metadata: the same bytes as serialising the `StoredMeta` with
/// serde_json (the tests compare them, field by field and for every byte
/// that needs escaping).
///
/// Written by hand because it runs for every message, and serde_json's
/// way cost more than twice as much: it escapes every key byte by byte as
/// well as every value, and `#[serde(flatten)]` would go through serde's
/// map path. Keys here are literals, and a value with nothing to escape
/// (nearly all of them) is copied whole. The rare nested parts (a client
/// certificate, a policy's data, XCLIENT, DSN) are left to serde_json.
///
/// A field added to [`MessageMeta`] must be added here too, in the same
/// place: the tests' `every_field` names every field, so they stop
/// compiling until it is.
pub(crate) fn stored_json(
    id: &str,
    size: u64,
    meta: &MessageMeta,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = Vec::with_capacity(512);
    let out = &mut json;
    out.extend_from_slice(b"{\"id\":");
    string(out, id)?;
    out.extend_from_slice(b",\"size\":");
    out.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
    out.extend_from_slice(b",\"received_at\":");
    string(out, &meta.received_at)?;
    out.extend_from_slice(b",\"mail_from\":");
    string(out, &meta.mail_from)?;
    out.extend_from_slice(b",\"rcpt_to\":[");
    for (i, rcpt) in meta.rcpt_to.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, rcpt)?;
    }
    out.extend_from_slice(b"],\"body\":");
    string(out, &meta.body)?;
    out.extend_from_slice(b",\"declared_size\":");
    match meta.declared_size {
        Some(size) => out.extend_from_slice(itoa::Buffer::new().format(size).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"helo\":");
    optional_string(out, meta.helo.as_deref())?;
    out.extend_from_slice(b",\"client_addr\":");
    string(out, &meta.client_addr)?;
    out.extend_from_slice(b",\"server_addr\":");
    string(out, &meta.server_addr)?;
    out.extend_from_slice(b",\"listener\":");
    string(out, &meta.listener)?;
    out.extend_from_slice(b",\"tls\":");
    match &meta.tls {
        Some(tls) => {
            out.extend_from_slice(b"{\"version\":");
            string(out, &tls.version)?;
            out.extend_from_slice(b",\"cipher\":");
            string(out, &tls.cipher)?;
            if let Some(certificate) = &tls.client_certificate {
                out.extend_from_slice(b",\"client_certificate\":");
                serde_json::to_writer(&mut *out, certificate)?;
            }
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"auth\":");
    match &meta.auth {
        Some(auth) => {
            out.extend_from_slice(b"{\"authn_id\":");
            string(out, &auth.authn_id)?;
            out.extend_from_slice(b",\"authz_id\":");
            string(out, &auth.authz_id)?;
            out.extend_from_slice(b",\"mechanism\":");
            string(out, &auth.mechanism)?;
            if let Some(data) = &auth.user_data {
                out.extend_from_slice(b",\"user_data\":");
                serde_json::to_writer(&mut *out, data)?;
            }
            if let Some(credential) = &auth.credential {
                out.extend_from_slice(b",\"credential\":{\"id\":");
                string(out, &credential.id)?;
                out.extend_from_slice(b",\"label\":");
                string(out, &credential.label)?;
                out.push(b'}');
            }
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"mail_auth_param\":");
    optional_string(out, meta.mail_auth_param.as_deref())?;
    if let Some(xclient) = &meta.xclient {
        out.extend_from_slice(b",\"xclient\":");
        serde_json::to_writer(&mut *out, xclient)?;
    }
    if !meta.meta.is_empty() {
        out.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut *out, &meta.meta)?;
    }
    if let Some(held) = &meta.held {
        out.extend_from_slice(b",\"held\":");
        string(out, held)?;
    }
    if meta.smtputf8 {
        out.extend_from_slice(b",\"smtputf8\":true");
    }
    if let Some(dsn) = &meta.dsn {
        out.extend_from_slice(b",\"dsn\":");
        serde_json::to_writer(&mut *out, dsn)?;
    }
    out.push(b'}');
    Ok(json)
}

/// A JSON string: copied whole when nothing in it needs escaping (JSON
/// escapes only control characters, `"` and `\`), else serde_json's.
fn string(out: &mut Vec<u8>, value: &str) -> Result<(), serde_json::Error> {
    if plain(value.as_bytes()) {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, value)
    }
}

/// Whether JSON needs `bytes` escaped at none of them: no control
/// character, `"` or `\\`. Eight bytes at a time (the bit tricks below
/// tell exactly whether any byte of a word is below 0x20 or equal to a
/// given one), then byte by byte: the metadata's strings are short, and
/// a byte at a time cost four instructions each.
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `word` is below `n` (for n <= 0x80).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    // Some byte of `word` is `b`.
    let has = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of eight"));
        if below(word, 0x20) || has(word, b'"') || has(word, b'\\') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn optional_string(out: &mut Vec<u8>, value: Option<&str>) -> Result<(), serde_json::Error> {
    match value {
        Some(value) => string(out, value),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    /// Every byte value, at every place of strings long enough for whole
    /// words and a tail, against the rule written a byte at a time.
    #[test]
    fn the_word_at_a_time_check_agrees_with_the_byte_rule() {
        let rule = |bytes: &[u8]| bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        for len in 1..=25 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for fill in [b'a', 0xff, 0x7f, 0x20] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = byte;
                        assert_eq!(plain(&bytes), rule(&bytes), "{byte:#x} at {at} of {len}");
                    }
                }
            }
        }
        assert!(plain(b""));
    }
}
