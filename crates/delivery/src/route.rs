//! Route selection: which configured route carries a recipient.
//!
//! Routes are tried in file order; the first whose domain list matches the
//! recipient's domain and whose user list is empty or holds the submitter's
//! authn id wins. Pure, so tested without a network.

use portcullis_config::delivery::Route;

/// The route for `recipient` submitted by `user` (authn id), if any.
pub fn select<'a>(routes: &'a [Route], recipient: &str, user: Option<&str>) -> Option<&'a Route> {
    let domain = recipient
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    routes.iter().find(|route| {
        let user_ok = route.users.is_empty()
            || user.is_some_and(|u| route.users.iter().any(|allowed| allowed == u));
        user_ok && route.domains.iter().any(|d| domain_matches(d, &domain))
    })
}

/// Recipients grouped by the index of the route that carries them (`None`:
/// no route matches), groups in order of first appearance.
pub fn groups(
    routes: &[Route],
    recipients: Vec<String>,
    user: Option<&str>,
) -> Vec<(Option<usize>, Vec<String>)> {
    let mut groups: Vec<(Option<usize>, Vec<String>)> = Vec::new();
    for rcpt in recipients {
        let route = select(routes, &rcpt, user)
            .and_then(|r| routes.iter().position(|x| std::ptr::eq(x, r)));
        match groups.iter_mut().find(|(r, _)| *r == route) {
            Some((_, rcpts)) => rcpts.push(rcpt),
            None => groups.push((route, vec![rcpt])),
        }
    }
    groups
}

/// `*` matches anything; `.example.com` matches its subdomains; otherwise
/// an exact (lowercase) match.
fn domain_matches(pattern: &str, domain: &str) -> bool {
    match pattern {
        "*" => true,
        p if p.starts_with('.') => domain.ends_with(p),
        p => p == domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_config::delivery::{Identity, Transport};

    fn route(name: &str, domains: &[&str], users: &[&str]) -> Route {
        Route {
            name: name.into(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            transport: Transport::Maildir { path: "/m".into() },
            workers: 1,
            identity: Identity::None,
            identity_required: true,
        }
    }

    #[test]
    fn first_match_in_file_order() {
        let routes = vec![
            route("vip", &["*"], &["boss"]),
            route("local", &["example.test"], &[]),
            route("subs", &[".corp.test"], &[]),
            route("default", &["*"], &[]),
        ];
        let pick = |rcpt, user| select(&routes, rcpt, user).map(|r| r.name.as_str());
        assert_eq!(pick("a@Example.TEST", None), Some("local"));
        assert_eq!(pick("a@example.test", Some("boss")), Some("vip"));
        assert_eq!(pick("a@mx.corp.test", Some("alice")), Some("subs"));
        assert_eq!(pick("a@corp.test", None), Some("default"));
        assert_eq!(pick("postmaster", None), Some("default"));
    }

    #[test]
    fn groups_by_route_index_in_order() {
        let routes = vec![
            route("local", &["example.test"], &[]),
            route("remote", &["remote.test"], &[]),
        ];
        let rcpts = [
            "a@remote.test",
            "b@example.test",
            "c@nowhere.test",
            "d@remote.test",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            groups(&routes, rcpts, None),
            vec![
                (
                    Some(1),
                    vec!["a@remote.test".to_string(), "d@remote.test".to_string()]
                ),
                (Some(0), vec!["b@example.test".to_string()]),
                (None, vec!["c@nowhere.test".to_string()]),
            ]
        );
    }

    #[test]
    fn no_match_is_none() {
        let routes = vec![route("local", &["example.test"], &[])];
        assert!(select(&routes, "a@elsewhere.test", None).is_none());
        let users_only = vec![route("vip", &["*"], &["boss"])];
        assert!(select(&users_only, "a@x.test", None).is_none());
    }
}
