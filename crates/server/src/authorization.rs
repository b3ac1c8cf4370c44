//! Authorization after AUTH: the envelope senders a user may use, built
//! into a [`SenderRule`] for the session, and the tenant a message names
//! in its tenant header (KumoMTA's `require_authz`), checked before the
//! message is spooled.

use std::ops::Range;

use portcullis_config::authorization::Tenants;
use portcullis_proto::Reply;
use portcullis_session::{AuthOutcome, Message, SenderRule};

use crate::connection::Peer;
use crate::Shared;

/// The senders an accepted user owns, when `[senders]` is on: the user
/// name if it is an address, `name@domain` for each configured domain, the
/// authz id likewise, the store's `may_act_as` entries that are addresses
/// (or `@domain`, or `*`), and the policy hook's `addresses` user data.
pub(crate) async fn sender_rule(
    shared: &Shared,
    peer: &Peer,
    outcome: &AuthOutcome,
) -> Option<SenderRule> {
    let policy = shared.authorization.senders.as_ref()?;
    let AuthOutcome::Accepted { authn_id, authz_id } = outcome else {
        return None;
    };
    let mut owned = Vec::new();
    for id in [authn_id, authz_id] {
        if id.contains('@') {
            owned.push(id.clone());
        } else {
            owned.extend(policy.domains.iter().map(|d| format!("{id}@{d}")));
        }
    }
    let authenticator = shared.authenticator.clone();
    let user = authn_id.clone();
    match tokio::task::spawn_blocking(move || authenticator.identities(&user)).await {
        Ok(Ok(identities)) => owned.extend(identities),
        Ok(Err(error)) => {
            // Fail closed: only the addresses derived above.
            tracing::warn!(user = %authn_id, %error, "sender check: store unavailable, aliases not loaded");
        }
        Err(_) => {}
    }
    if let Some(data) = peer.meta.user_data() {
        let addresses = data.get("addresses").and_then(|a| a.as_array());
        owned.extend(
            addresses
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(String::from)),
        );
    }
    Some(SenderRule::new(owned))
}

/// Checks the tenant header against `[tenant.'name'] require_authz` and
/// removes it when configured. `Err` is the reply: nothing is spooled.
pub(crate) fn check_tenant(
    shared: &Shared,
    peer: &Peer,
    message: &mut Message,
) -> Result<(), Reply> {
    let Some(tenants) = &shared.authorization.tenants else {
        return Ok(());
    };
    let (names, ranges) = header_fields(&message.data, &tenants.header);
    let authz = message
        .identity
        .as_ref()
        .map(|i| i.authz_id.clone())
        .or_else(|| message.xclient.as_ref().and_then(|x| x.login.clone()));
    for name in &names {
        if !may_use(tenants, name, authz.as_deref()) {
            tracing::warn!(client = %peer.client.ip(), tenant = %name, authz = ?authz, "refused: tenant not allowed for this identity");
            return Err(Reply::tenant_not_authorized());
        }
    }
    if tenants.remove_header {
        for range in ranges.into_iter().rev() {
            message.data.drain(range);
        }
    }
    Ok(())
}

fn may_use(tenants: &Tenants, name: &str, authz: Option<&str>) -> bool {
    match tenants.require_authz.get(name) {
        None => true,
        Some(allowed) => authz.is_some_and(|a| allowed.iter().any(|x| x == a)),
    }
}

/// The values of every `name:` field in the header section of `data`
/// (unfolded, trimmed) and the byte ranges of those fields, continuation
/// lines included.
pub(crate) fn header_fields(data: &[u8], name: &str) -> (Vec<String>, Vec<Range<usize>>) {
    let mut values = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut current: Option<usize> = None;
    while start < data.len() {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i + 1);
        let line = &data[start..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        let folded = content[0] == b' ' || content[0] == b'\t';
        match (folded, current) {
            (true, Some(i)) => {
                ranges[i].end = end;
                values[i] = format!("{} {}", values[i], String::from_utf8_lossy(content).trim());
            }
            (true, None) => {}
            (false, _) => {
                current = None;
                let field = content.split(|&b| b == b':').next().unwrap_or_default();
                if content.contains(&b':') && field.eq_ignore_ascii_case(name.as_bytes()) {
                    let value = &content[field.len() + 1..];
                    values.push(String::from_utf8_lossy(value).trim().to_string());
                    ranges.push(start..end);
                    current = Some(values.len() - 1);
                }
            }
        }
        start = end;
    }
    (values, ranges)
}

#[cfg(test)]
mod tests {
    use super::header_fields;

    #[test]
    fn finds_and_locates_header_fields_only_in_the_header_section() {
        let data = b"From: a@b\r\nX-Tenant: acme\r\nx-tenant:  other\r\n\tpart\r\nSubject: s\r\n\r\nX-Tenant: body\r\n";
        let (values, ranges) = header_fields(data, "X-Tenant");
        assert_eq!(values, ["acme", "other part"]);
        let mut rest = data.to_vec();
        for r in ranges.into_iter().rev() {
            rest.drain(r);
        }
        assert_eq!(rest, b"From: a@b\r\nSubject: s\r\n\r\nX-Tenant: body\r\n");
        assert!(header_fields(b"Subject: x\n\nbody", "X-Tenant")
            .0
            .is_empty());
    }
}
