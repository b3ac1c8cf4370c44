//! Authorization after AUTH: the envelope senders a user may use, built
//! into a [`SenderRule`] for the session, and the tenant a message names
//! in its tenant header (KumoMTA's `require_authz`), checked before the
//! message is spooled. Pure: the auth service fetches the store's
//! `may_act_as` entries and hands them in.

use std::net::IpAddr;

use portcullis_config::authorization::{SenderPolicy, Tenants};
use portcullis_proto::Reply;
use portcullis_session::{Message, SenderRule};

/// The senders an accepted user owns, when `[senders]` is on: the user
/// name if it is an address, `name@domain` for each configured domain, the
/// authz id likewise, the store's `may_act_as` entries that are addresses
/// (or `@domain`, or `*`), and the policy hook's `addresses` user data.
pub(crate) fn sender_rule(
    policy: &SenderPolicy,
    authn_id: &str,
    authz_id: &str,
    may_act_as: Vec<String>,
    user_data: Option<&serde_json::Value>,
) -> SenderRule {
    let mut owned = Vec::new();
    for id in [authn_id, authz_id] {
        if id.contains('@') {
            owned.push(id.to_string());
        } else {
            owned.extend(policy.domains.iter().map(|d| format!("{id}@{d}")));
        }
    }
    owned.extend(may_act_as);
    if let Some(data) = user_data {
        let addresses = data.get("addresses").and_then(|a| a.as_array());
        owned.extend(
            addresses
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(String::from)),
        );
    }
    let rule = SenderRule::new(owned);
    match policy.check_from_header {
        true => rule.checking_from_header(),
        false => rule,
    }
}

/// Checks the tenant header against `[tenant.'name'] require_authz` and
/// removes it when configured. `Err` is the reply: nothing is spooled.
/// `client` is for the log.
///
/// The tenant a later reader (KumoMTA's queue helper) acts on must be the
/// one checked here, so anything it could read differently is refused: a
/// second tenant field (however its name is spelled: `X-Tenant :` counts),
/// or a value that is not one plain token (an RFC 2047 encoded word, a
/// quoted string, a comment). Removal takes the field in every spelling.
pub(crate) fn check_tenant(
    tenants: &Tenants,
    client: IpAddr,
    groups: &[String],
    message: &mut Message,
) -> Result<(), Reply> {
    let found = portcullis_proto::header::fields(&message.data, &tenants.header);
    let authz = message
        .identity
        .as_ref()
        .map(|i| i.authz_id.clone())
        .or_else(|| message.xclient.as_ref().and_then(|x| x.login.clone()));
    match found.as_slice() {
        [] => {}
        [field] if portcullis_proto::header::is_plain_token(&field.value) => {
            if !may_use(tenants, &field.value, authz.as_deref(), groups) {
                tracing::warn!(%client, tenant = %field.value, authz = ?authz, "refused: tenant not allowed for this identity");
                return Err(Reply::tenant_not_authorized());
            }
        }
        _ => {
            let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
            tracing::warn!(%client, tenants = ?values, authz = ?authz, "refused: several tenant headers, or a tenant that is not a plain name");
            return Err(Reply::tenant_header_ambiguous());
        }
    }
    if tenants.remove_header {
        for field in found.into_iter().rev() {
            message.data.drain(field.range);
        }
    }
    Ok(())
}

/// A tenant listed under `require_authz` may be named by those
/// authorization identities, and by members of its `require_group` groups.
fn may_use(tenants: &Tenants, name: &str, authz: Option<&str>, groups: &[String]) -> bool {
    let Some(allowed) = tenants.require_authz.get(name) else {
        return true;
    };
    if authz.is_some_and(|a| allowed.iter().any(|x| x == a)) {
        return true;
    }
    let allowed_groups = tenants
        .require_group
        .get(name)
        .map_or(&[][..], Vec::as_slice);
    authz.is_some() && groups.iter().any(|g| allowed_groups.contains(g))
}

/// The groups of the KumoMTA AuthInfo the policy answered this session's
/// login with (`auth_info.groups` in its user data).
pub(crate) fn auth_info_groups(user_data: Option<&serde_json::Value>) -> Vec<String> {
    let Some(data) = user_data else {
        return Vec::new();
    };
    let groups = data.pointer("/auth_info/groups").and_then(|g| g.as_array());
    groups
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_owns_its_names_its_aliases_and_the_policy_addresses() {
        let policy = SenderPolicy {
            domains: vec!["example.test".into()],
            check_from_header: false,
        };
        let data = serde_json::json!({ "addresses": ["team@example.test"] });
        let rule = sender_rule(
            &policy,
            "alice",
            "alice",
            vec!["@alias.test".into()],
            Some(&data),
        );
        let allows = |a: &str| rule.allows(&portcullis_proto::Path::Mailbox(a.into()));
        assert!(allows("alice@example.test"));
        assert!(allows("anyone@alias.test"));
        assert!(allows("team@example.test"));
        assert!(!allows("bob@example.test"));
    }
}
