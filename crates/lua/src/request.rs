//! What a hook is told: the attempt ([`AuthRequest`]), the connection
//! ([`ConnFacts`]) and the per-connection metadata ([`ConnMeta`]) that all
//! hooks of one connection share, as KumoMTA's `conn_meta` is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use portcullis_sasl::Secret;

/// One AUTH attempt.
#[derive(Debug)]
pub struct AuthRequest {
    /// The mechanism's name, upper case (`PLAIN`).
    pub mechanism: String,
    /// The authentication identity.
    pub user: String,
    /// The password: PLAIN and LOGIN only.
    pub password: Option<Secret>,
    /// The authorization identity the client asked for, if any; after
    /// verification, the one our own check granted.
    pub authzid: Option<String>,
    /// `true` when portcullis already verified the proof (CRAM-MD5, SCRAM,
    /// a bearer token, a client certificate) and `user` is the verified
    /// identity: the hook may still refuse, or accept with user data.
    pub verified: bool,
}

/// The negotiated TLS session.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    pub version: String,
    pub cipher: String,
    /// The cipher's key size in bits (Halon's `keysize`), 0 if unknown.
    pub key_size: u32,
    /// The client certificate rustls verified, if the client sent one.
    pub client_certificate: Option<CertFacts>,
}

/// A TLS client certificate (EXTERNAL's identity comes from a verified
/// one), with what Halon's `GetTLS` tells of it.
#[derive(Debug, Clone, Default)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// Fingerprints of the DER certificate, colon-separated upper-case hex.
    pub sha256: String,
    pub md5: String,
    pub sha1: String,
    pub sha512: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub subject_alt_names: Vec<String>,
    pub key_algorithm: String,
    pub key_bits: u32,
    /// `None`: it chained to `[tls] client_ca`; else why not (a listener
    /// that only requests certificates took it).
    pub verify_error: Option<String>,
}

/// The connection, as the server knows it.
#[derive(Debug, Clone)]
pub struct ConnFacts {
    pub client: SocketAddr,
    pub server: Option<SocketAddr>,
    pub helo: Option<String>,
    pub listener: String,
    pub tls: Option<TlsFacts>,
    /// Behind a trusted XCLIENT proxy, the proxy's own address (`client`
    /// is then the client the proxy named).
    pub proxy: Option<SocketAddr>,
    /// `ESMTP`, `ESMTPS`, `ESMTPSA`, … as the Received header says it
    /// (KumoMTA's `reception_protocol`).
    pub protocol: String,
}

impl ConnFacts {
    /// The `conn` table of `smtp_server_auth`.
    pub(crate) fn to_lua(&self, lua: &Lua, meta: &ConnMeta) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("client_ip", self.client.ip().to_string())?;
        t.set("client_port", self.client.port())?;
        if let Some(server) = self.server {
            t.set("server_ip", server.ip().to_string())?;
            t.set("server_port", server.port())?;
        }
        if let Some(proxy) = self.proxy {
            t.set("proxy_ip", proxy.ip().to_string())?;
            t.set("proxy_port", proxy.port())?;
        }
        t.set("helo", self.helo.clone())?;
        t.set("listener", self.listener.clone())?;
        if let Some(tls) = &self.tls {
            let tls_table = lua.create_table()?;
            tls_table.set("version", tls.version.clone())?;
            tls_table.set("cipher", tls.cipher.clone())?;
            tls_table.set("key_size", tls.key_size)?;
            if let Some(cert) = &tls.client_certificate {
                tls_table.set("peer_subject", cert.subject.clone())?;
                tls_table.set("peer_issuer", cert.issuer.clone())?;
                tls_table.set("peer_sha256", cert.sha256.clone())?;
                tls_table.set("peer_md5", cert.md5.clone())?;
                tls_table.set("peer_sha1", cert.sha1.clone())?;
                tls_table.set("peer_sha512", cert.sha512.clone())?;
                tls_table.set("peer_serial", cert.serial.clone())?;
                tls_table.set("peer_not_before", cert.not_before.clone())?;
                tls_table.set("peer_not_after", cert.not_after.clone())?;
                tls_table.set("peer_subject_alt_names", cert.subject_alt_names.clone())?;
                tls_table.set("peer_key_algorithm", cert.key_algorithm.clone())?;
                tls_table.set("peer_key_bits", cert.key_bits)?;
                tls_table.set("peer_verified", cert.verify_error.is_none())?;
                tls_table.set("peer_verify_error", cert.verify_error.clone())?;
            }
            t.set("tls", tls_table)?;
        }
        t.set("meta", meta.clone())?;
        Ok(t)
    }

    /// KumoMTA's names for the same facts, preset in `conn_meta`.
    pub(crate) fn kumo_meta(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut v = vec![
            ("received_from", self.client.to_string().into()),
            ("listener", self.listener.clone().into()),
        ];
        if let Some(server) = self.server {
            v.push(("received_via", server.to_string().into()));
        }
        if let Some(helo) = &self.helo {
            v.push(("ehlo_domain", helo.clone().into()));
        }
        if let Some(tls) = &self.tls {
            v.push(("tls_version", tls.version.clone().into()));
            v.push(("tls_cipher", tls.cipher.clone().into()));
        }
        v
    }
}

#[derive(Debug, Default)]
struct MetaState {
    values: HashMap<String, serde_json::Value>,
    user_data: Option<serde_json::Value>,
}

/// Metadata of one connection, shared by its hooks (`conn_meta:get_meta`,
/// `conn_meta:set_meta`), and the user data an accepting hook attached.
/// Values are plain data (stored as JSON), so they outlive the Lua state
/// that set them.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta(Arc<Mutex<MetaState>>);

impl ConnMeta {
    pub fn new() -> Self {
        Self::default()
    }

    /// A value, if set.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.lock().values.get(key).cloned()
    }

    /// Sets a value.
    pub fn set(&self, key: &str, value: serde_json::Value) {
        self.lock().values.insert(key.to_string(), value);
    }

    /// Every value set, for the message metadata.
    pub fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        self.lock()
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The user data of the accepted AUTH, for the message metadata.
    pub fn user_data(&self) -> Option<serde_json::Value> {
        self.lock().user_data.clone()
    }

    /// Drops what an accepted AUTH recorded (`authn_id`, `authz_id`, the
    /// user data): a new login replaces it, and a refused one must not
    /// leave the previous user's behind.
    pub fn forget_login(&self) {
        let mut state = self.lock();
        state.values.remove("authn_id");
        state.values.remove("authz_id");
        state.user_data = None;
    }

    pub(crate) fn set_user_data(&self, data: Option<serde_json::Value>) {
        self.lock().user_data = data;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetaState> {
        // Invariant: never held across a call into Lua.
        self.0.lock().expect("conn meta lock")
    }
}

impl UserData for ConnMeta {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get_meta", |lua, meta, key: String| match meta.get(&key) {
            Some(value) => lua.to_value_with(&value, crate::memoize::lua_options()),
            None => Ok(Value::Nil),
        });
        methods.add_method("set_meta", |lua, meta, (key, value): (String, Value)| {
            let value: serde_json::Value = lua.from_value(value)?;
            meta.set(&key, value);
            Ok(())
        });
    }
}
