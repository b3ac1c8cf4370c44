//! Authorization after authentication: `[senders]` (which envelope senders
//! a user may use) and `[tenants]` / `[tenant.'name']` (which tenants an
//! authorization identity may name in the tenant header, as KumoMTA's
//! queues helper does with `require_authz`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::invalid;
use crate::ConfigError;

/// `[senders]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSenders {
    pub enforce: Option<bool>,
    pub domains: Option<Vec<String>>,
    pub check_from_header: Option<bool>,
}

/// `[tenants]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenants {
    pub header: Option<String>,
    pub remove_header: Option<bool>,
}

/// `[tenant.'name']` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub require_authz: Option<Vec<String>>,
    pub require_group: Option<Vec<String>>,
}

/// The validated rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    /// `Some`: MAIL FROM must be an address the user owns (`553 5.7.1`).
    pub senders: Option<SenderPolicy>,
    /// `Some`: messages naming a tenant are checked against its authz list.
    pub tenants: Option<Tenants>,
}

/// What a user owns besides the entries of their store record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderPolicy {
    /// A user named `alice` owns `alice@<domain>` for each of these; a
    /// user named like an address owns that address.
    pub domains: Vec<String>,
    /// The `From:` header's addresses must be owned too (`550 5.7.1`).
    pub check_from_header: bool,
}

/// Tenant rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenants {
    /// The header naming the tenant (default `X-Tenant`).
    pub header: String,
    /// Remove the header before spooling (default true).
    pub remove_header: bool,
    /// Tenant name → the authorization identities allowed to use it.
    /// A tenant not listed here may be named by anyone.
    pub require_authz: BTreeMap<String, Vec<String>>,
    /// Tenant → the groups (of a policy's KumoMTA AuthInfo answer) whose
    /// members may also use it. Only tenants listed in `require_authz`
    /// are restricted; this widens who may name them.
    pub require_group: BTreeMap<String, Vec<String>>,
}

pub(crate) fn validate(
    senders: Option<RawSenders>,
    tenants: Option<RawTenants>,
    tenant: BTreeMap<String, RawTenant>,
) -> Result<Authorization, ConfigError> {
    let senders = match senders {
        Some(raw) if raw.enforce.unwrap_or(true) => Some(SenderPolicy {
            domains: raw
                .domains
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            check_from_header: raw.check_from_header.unwrap_or(false),
        }),
        _ => None,
    };
    let tenants = if tenants.is_none() && tenant.is_empty() {
        None
    } else {
        let raw = tenants.unwrap_or_default();
        let header = raw.header.unwrap_or_else(|| "X-Tenant".into());
        if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(invalid(
                "tenants.header",
                format!("{header:?} is not a header name"),
            ));
        }
        // A message names its tenant with one plain token, or is refused;
        // a tenant whose name is not one could never be used.
        if let Some(name) = tenant
            .keys()
            .find(|name| !portcullis_proto::header::is_plain_token(name))
        {
            return Err(invalid(
                format!("tenant.{name:?}"),
                "a tenant name must be one plain token (visible ASCII, no spaces or ()<>@,;:\\\"/[]?=)",
            ));
        }
        Some(Tenants {
            header,
            remove_header: raw.remove_header.unwrap_or(true),
            require_group: tenant
                .iter()
                .filter_map(|(name, t)| Some((name.clone(), t.require_group.clone()?)))
                .collect(),
            require_authz: tenant
                .into_iter()
                .map(|(name, t)| (name, t.require_authz.unwrap_or_default()))
                .collect(),
        })
    };
    Ok(Authorization { senders, tenants })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    fn parse(text: &str) -> Result<Config, crate::ConfigError> {
        Config::parse(text, Path::new("/etc/portcullis/portcullis.toml"), None)
    }

    #[test]
    fn off_by_default() {
        let c = parse("").unwrap();
        assert_eq!(c.authorization, Default::default());
    }

    #[test]
    fn senders_and_tenants() {
        let c = parse(
            "[senders]\ndomains = [\"@Example.com\"]\n\
             [tenants]\nheader = \"X-Kumo-Tenant\"\nremove_header = false\n\
             [tenant.'mytenant']\nrequire_authz = [\"daniel\"]\n",
        )
        .unwrap();
        let senders = c.authorization.senders.unwrap();
        assert_eq!(senders.domains, ["example.com"]);
        let tenants = c.authorization.tenants.unwrap();
        assert_eq!(tenants.header, "X-Kumo-Tenant");
        assert!(!tenants.remove_header);
        assert_eq!(tenants.require_authz["mytenant"], ["daniel"]);
        let off = parse("[senders]\nenforce = false\n").unwrap();
        assert!(off.authorization.senders.is_none());
        assert!(parse("[tenants]\nheader = \"X Bad:\"\n").is_err());
        assert!(parse("[tenant.'two words']\nrequire_authz = [\"a\"]\n").is_err());
        assert!(parse("[tenant.'=?utf-8?q?x?=']\n").is_err());
    }
}
