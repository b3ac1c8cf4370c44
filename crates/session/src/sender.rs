//! Which envelope senders an authenticated client may use (Postfix's
//! `reject_sender_login_mismatch`, maddy's `authorize_sender`).
//!
//! The session only applies the rule: the driver builds it after AUTH from
//! what the store and the policy hook say the user owns, and hands it over
//! with [`crate::Session::restrict_senders`]. Without a rule every sender
//! is accepted (the check is off, or the client is not authenticated).

use portcullis_proto::address::canonical;
use portcullis_proto::{header, Path, Reply};

/// The addresses one user may send from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderRule {
    any: bool,
    /// Full addresses in canonical form ([`canonical`]: NFC, lower case).
    addresses: Vec<String>,
    /// Canonical domains from `@domain` entries: any address there.
    domains: Vec<String>,
    /// The `From:` header's addresses must be owned too.
    from_header: bool,
}

impl SenderRule {
    /// Builds a rule from owned entries: `user@example.com` (that address),
    /// `@example.com` (any address in that domain), `*` (any sender).
    /// Entries without `@` (plain identities) own nothing.
    pub fn new<I, S>(owned: I) -> SenderRule
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut rule = SenderRule::default();
        for entry in owned {
            let entry = canonical(entry.as_ref().trim());
            if entry == "*" {
                rule.any = true;
            } else if let Some(domain) = entry.strip_prefix('@') {
                rule.domains.push(domain.to_string());
            } else if entry.contains('@') && !rule.addresses.contains(&entry) {
                rule.addresses.push(entry);
            }
        }
        rule
    }

    /// Also checks the `From:` header of each message (`550 5.7.1`).
    pub fn checking_from_header(mut self) -> SenderRule {
        self.from_header = true;
        self
    }

    /// Whether messages are checked by [`SenderRule::check_message`].
    pub fn checks_from_header(&self) -> bool {
        self.from_header
    }

    /// With the header check on: the message must have exactly one `From:`
    /// field (a second one, even spelled `From :`, is what a later reader
    /// might show instead), naming at least one address, every one of them
    /// owned. `Err` is the `550 5.7.1` to send. Always `Ok` when the check
    /// is off.
    pub fn check_message(&self, data: &[u8]) -> Result<(), Reply> {
        if !self.from_header {
            return Ok(());
        }
        let [from] = header::fields(data, "From")
            .try_into()
            .map_err(|_| Reply::from_header_not_single())?;
        let addresses = header::mailbox_addresses(&from.value);
        let owned = !addresses.is_empty()
            && addresses
                .into_iter()
                .all(|a| self.allows(&Path::Mailbox(a)));
        match owned {
            true => Ok(()),
            false => Err(Reply::from_header_not_owned()),
        }
    }

    /// Whether `from` may be used. The null sender `<>` (bounces) is
    /// always allowed: it names no one.
    pub fn allows(&self, from: &Path) -> bool {
        let address = canonical(from.as_str());
        if self.any || matches!(from, Path::Null) {
            return true;
        }
        if self.addresses.contains(&address) {
            return true;
        }
        match address.rsplit_once('@') {
            Some((_, domain)) => self.domains.iter().any(|d| *d == domain),
            None => false,
        }
    }
}
