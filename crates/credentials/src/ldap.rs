//! An LDAP user store (`users.backend = "ldap"`), with `ldap3`.
//!
//! Two ways to check a password, as other mail servers offer:
//! - [`LdapMode::Search`]: bind with a service account, find the user with
//!   a filter, read `userPassword` and verify it ourselves (`{SSHA}`,
//!   `{CRYPT}`, `{ARGON2}` and the other forms [`crate::scheme`] knows),
//!   like any other store; the verified cache and the failure floor apply
//!   as usual;
//! - [`LdapMode::Bind`]: bind as the user (the directory checks the
//!   password: [`CredentialStore::verify_password`]); the entry's other
//!   attributes are read with the service account, or anonymously.
//!
//! User names reach the directory only escaped: in filters as RFC 4515
//! literals (`*`, `(`, `)`, `\` and NUL as `\2a`, `\28`, `\29`, `\5c`,
//! `\00`), in DNs as RFC 4514 attribute values. The injection bugs of
//! maddy (GHSA-5835-4gvc-32pc) and Dovecot (CVE-2026-27860) came from
//! names spliced in raw: `*` matched every user, `)(` added a clause.
//! An empty password is never sent as a bind: RFC 4513 §5.1.2 makes that
//! an unauthenticated bind, which many directories accept.
//!
//! Every call is bounded ([`LdapSettings::timeout`] for connecting and
//! for each operation); a directory that is down or slow is
//! [`StoreError::Unavailable`] (`454 4.7.0`), never `535`. Connections
//! bound as the service account are pooled (up to [`MAX_IDLE`] idle).
//!
//! Attributes map to what other stores hold: `may_act_as`, CRAM-MD5 keys,
//! SCRAM secrets and the account switches, under configurable names; the
//! defaults are those of the auxiliary class in [`SCHEMA`].

use std::sync::Mutex;
use std::time::Duration;

use ldap3::{dn_escape, ldap_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};

use crate::sqlite::scram_keys;
use crate::{
    AccountState, CramMd5Keys, CredentialStore, Secret, StoreError, StoredPassword, UserRecord,
    Verification,
};

/// Idle connections kept for reuse.
pub const MAX_IDLE: usize = 8;

/// An OpenLDAP schema for the attributes portcullis reads, as an
/// auxiliary class to add to existing user entries (`include` it in
/// `slapd.conf`, or convert it for `cn=config`). OIDs under a UUID arc
/// (X.667), so they collide with no one's.
pub const SCHEMA: &str = r#"
objectidentifier portcullis 2.25.12145809348662887590577773832876360601
attributetype ( portcullis:1 NAME 'portcullisMayActAs'
  DESC 'an identity the user may act as (authzid, sender)'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( portcullis:2 NAME 'portcullisCramMd5'
  DESC 'CRAM-MD5 HMAC midstates, {CRAM-MD5} and 64 hex digits'
  EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( portcullis:3 NAME 'portcullisScramSha256'
  DESC 'SCRAM-SHA-256 secrets'
  EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( portcullis:4 NAME 'portcullisScramSha1'
  DESC 'SCRAM-SHA-1 secrets'
  EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( portcullis:5 NAME 'portcullisAccountDisabled'
  DESC 'TRUE: logins are refused (525 5.7.13)'
  EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( portcullis:6 NAME 'portcullisRequireAppPassword'
  DESC 'TRUE: the account password is refused for SMTP (534 5.7.9)'
  EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
objectclass ( portcullis:100 NAME 'portcullisAccount' AUXILIARY
  MAY ( portcullisMayActAs $ portcullisCramMd5 $ portcullisScramSha256 $
        portcullisScramSha1 $ portcullisAccountDisabled $ portcullisRequireAppPassword ) )
"#;

/// How passwords are checked.
#[derive(Debug, Clone)]
pub enum LdapMode {
    /// Search with the service account, verify `userPassword` ourselves.
    Search,
    /// Bind as the user: `dn` with `%u` for the RFC 4514-escaped name,
    /// e.g. `uid=%u,ou=people,dc=example,dc=org`.
    Bind { dn: String },
}

/// Attribute names read from a user's entry.
#[derive(Debug, Clone)]
pub struct LdapAttributes {
    pub password: String,
    pub may_act_as: String,
    pub cram_md5: String,
    pub scram_sha256: String,
    pub scram_sha1: String,
    pub disabled: String,
    pub require_app_password: String,
}

impl Default for LdapAttributes {
    fn default() -> Self {
        LdapAttributes {
            password: "userPassword".into(),
            may_act_as: "portcullisMayActAs".into(),
            cram_md5: "portcullisCramMd5".into(),
            scram_sha256: "portcullisScramSha256".into(),
            scram_sha1: "portcullisScramSha1".into(),
            disabled: "portcullisAccountDisabled".into(),
            require_app_password: "portcullisRequireAppPassword".into(),
        }
    }
}

/// What the store needs to know.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// StartTLS on an `ldap://` URL before binding.
    pub starttls: bool,
    /// The service account (search mode; optional in bind mode, where the
    /// entry is then read anonymously). `None`: anonymous.
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    /// Where users are searched.
    pub base_dn: String,
    /// The filter, `%u` for the RFC 4515-escaped name, e.g.
    /// `(&(objectClass=inetOrgPerson)(uid=%u))`.
    pub user_filter: String,
    /// The attribute holding the login name (`uid`). An entry is the
    /// user only if one of its values is the name byte for byte: names
    /// are exact here as in every store (the directory's matching rule
    /// may ignore case; the edge already made the name canonical).
    pub name_attribute: String,
    pub mode: LdapMode,
    pub attributes: LdapAttributes,
    /// Longest a connect or one operation may take.
    pub timeout: Duration,
}

/// A [`CredentialStore`] over an LDAP directory. Read-only.
pub struct LdapStore {
    settings: LdapSettings,
    idle: Mutex<Vec<LdapConn>>,
}

impl std::fmt::Debug for LdapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapStore")
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("ldap: {e}"))
}

/// `template` with `%u` replaced by `name`, filter-escaped (RFC 4515).
pub fn filter_for(template: &str, name: &str) -> String {
    template.replace("%u", &ldap_escape(name))
}

/// `template` with `%u` replaced by `name`, DN-escaped (RFC 4514).
pub fn dn_for(template: &str, name: &str) -> String {
    template.replace("%u", &dn_escape(name))
}

impl LdapStore {
    /// Connects once (to fail early on a wrong URL or service password).
    pub fn open(settings: LdapSettings) -> Result<Self, StoreError> {
        let store = LdapStore {
            settings,
            idle: Mutex::new(Vec::new()),
        };
        let conn = store.connect_service()?;
        store.give_back(conn);
        Ok(store)
    }

    fn connect(&self) -> Result<LdapConn, StoreError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(self.settings.starttls);
        LdapConn::with_settings(settings, &self.settings.url).map_err(unavailable)
    }

    /// A connection bound as the service account (or anonymous).
    fn connect_service(&self) -> Result<LdapConn, StoreError> {
        let mut conn = self.connect()?;
        if let (Some(dn), Some(password)) = (&self.settings.bind_dn, &self.settings.bind_password) {
            let password = std::str::from_utf8(password.expose())
                .map_err(|_| unavailable("the service password is not UTF-8"))?;
            conn.with_timeout(self.settings.timeout)
                .simple_bind(dn, password)
                .and_then(|r| r.success())
                .map_err(|e| unavailable(format!("service bind: {e}")))?;
        }
        Ok(conn)
    }

    fn give_back(&self, mut conn: LdapConn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs `f` on a pooled service connection; one that failed is dropped.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut LdapConn) -> ldap3::result::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(mut conn) => match conn.is_closed() {
                false => conn,
                true => self.connect_service()?,
            },
            None => self.connect_service()?,
        };
        let result = f(&mut conn).map_err(unavailable);
        if result.is_ok() {
            self.give_back(conn);
        }
        result
    }

    fn attribute_names(&self) -> Vec<&str> {
        let a = &self.settings.attributes;
        vec![
            &self.settings.name_attribute,
            &a.password,
            &a.may_act_as,
            &a.cram_md5,
            &a.scram_sha256,
            &a.scram_sha1,
            &a.disabled,
            &a.require_app_password,
        ]
    }

    /// The one entry `filter` finds under the base; two or more is the
    /// operator's data at fault (a login must name one account).
    fn find(&self, name: &str, filter: &str) -> Result<Option<SearchEntry>, StoreError> {
        let attributes = self.attribute_names();
        let timeout = self.settings.timeout;
        let base = self.settings.base_dn.clone();
        let (entries, _) = self.with_conn(|c| {
            c.with_timeout(timeout)
                .search(&base, Scope::Subtree, filter, attributes)?
                .success()
        })?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.into_iter().next().map(SearchEntry::construct)),
            n => Err(StoreError::InvalidRecord {
                user: name.to_owned(),
                reason: format!("{n} directory entries match"),
            }),
        }
    }

    fn record(&self, name: &str, entry: SearchEntry) -> Result<UserRecord, StoreError> {
        let a = &self.settings.attributes;
        let first = |attr: &str| -> Option<String> {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first().cloned())
        };
        let flag = |attr: &str| first(attr).is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
        let cram_md5 =
            match first(&a.cram_md5).filter(|s| !s.is_empty()) {
                Some(stored) => Some(CramMd5Keys::from_stored(&stored).map_err(|e| {
                    StoreError::InvalidRecord {
                        user: name.to_owned(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        let may_act_as = entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&a.may_act_as))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let password = match self.settings.mode {
            LdapMode::Search => first(&a.password).map(StoredPassword::new),
            // The directory checks it; we never read it.
            LdapMode::Bind { .. } => None,
        };
        Ok(UserRecord {
            name: name.to_owned(),
            password,
            cram_md5,
            scram: scram_keys(name, first(&a.scram_sha1), first(&a.scram_sha256))?,
            may_act_as,
            state: AccountState {
                disabled: flag(&a.disabled),
                require_app_password: flag(&a.require_app_password),
                password_set_at: None,
            },
        })
    }

    fn exists(&self, attribute: &str) -> Result<bool, StoreError> {
        let filter = format!(
            "(&{}({attribute}=*))",
            self.settings.user_filter.replace("%u", "*")
        );
        let timeout = self.settings.timeout;
        let base = self.settings.base_dn.clone();
        let found = self.with_conn(|c| {
            let search =
                c.with_timeout(timeout)
                    .search(&base, Scope::Subtree, &filter, vec!["1.1"])?;
            // Size limit exceeded (4) still says "some".
            Ok(!search.0.is_empty())
        })?;
        Ok(found)
    }
}

impl CredentialStore for LdapStore {
    fn lookup(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        if name.is_empty() {
            return Ok(None);
        }
        let filter = filter_for(&self.settings.user_filter, name);
        let Some(entry) = self.find(name, &filter)? else {
            return Ok(None);
        };
        let exact = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&self.settings.name_attribute))
            .flat_map(|(_, values)| values)
            .any(|v| v == name);
        match exact {
            true => self.record(name, entry).map(Some),
            false => Ok(None),
        }
    }

    fn has_cram_md5_keys(&self) -> Result<bool, StoreError> {
        self.exists(&self.settings.attributes.cram_md5.clone())
    }

    fn has_scram_secrets(&self) -> Result<bool, StoreError> {
        self.exists(&self.settings.attributes.scram_sha256.clone())
    }

    /// Bind mode: a bind as the user on a connection of its own (never
    /// pooled: it is no longer the service account's).
    fn verify_password(
        &self,
        name: &str,
        password: &Secret,
    ) -> Result<Option<Verification>, StoreError> {
        let LdapMode::Bind { dn } = &self.settings.mode else {
            return Ok(None);
        };
        // An empty password would be an unauthenticated bind (RFC 4513
        // §5.1.2), which succeeds: never send one.
        let Ok(password) = std::str::from_utf8(password.expose()) else {
            return Ok(Some(Verification::Mismatch));
        };
        if password.is_empty() || name.is_empty() {
            return Ok(Some(Verification::Mismatch));
        }
        let mut conn = self.connect()?;
        let result = conn
            .with_timeout(self.settings.timeout)
            .simple_bind(&dn_for(dn, name), password)
            .map_err(unavailable)?;
        let _ = conn.unbind();
        match result.rc {
            0 => Ok(Some(Verification::Match)),
            // invalidCredentials; noSuchObject where the directory says so.
            32 | 49 => Ok(Some(Verification::Mismatch)),
            rc => Err(unavailable(format!("bind: result code {rc}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_filters_and_dns() {
        let filter = "(&(objectClass=inetOrgPerson)(uid=%u))";
        assert_eq!(
            filter_for(filter, "*"),
            "(&(objectClass=inetOrgPerson)(uid=\\2a))"
        );
        assert_eq!(
            filter_for(filter, "alice)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=alice\\29\\28uid=\\2a))"
        );
        assert_eq!(
            filter_for(filter, "a\0b\\c"),
            "(&(objectClass=inetOrgPerson)(uid=a\\00b\\5cc))"
        );
        let dn = "uid=%u,ou=people,dc=example,dc=org";
        assert_eq!(
            dn_for(dn, "bob,ou=admins"),
            "uid=bob\\2cou\\3dadmins,ou=people,dc=example,dc=org"
        );
        // RFC 4514 §2.4: a leading '#' or space and a trailing space too.
        assert!(dn_for(dn, "#x+\"<>;\\ ").starts_with("uid=\\23x\\2b\\22\\3c\\3e\\3b\\5c\\20,"));
        assert!(dn_for(dn, " a\0").starts_with("uid=\\20a\\00,"));
    }
}
