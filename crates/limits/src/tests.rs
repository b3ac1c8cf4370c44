//! The policy on virtual time, with the memory backend.

use std::net::IpAddr;
use std::time::Duration;

use crate::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn small() -> LimitsConfig {
    LimitsConfig {
        delay_initial: Duration::from_millis(100),
        delay_max: Duration::from_millis(700),
        failure_window: Duration::from_secs(60),
        user_max_failures: 5,
        user_cooldown: Duration::from_secs(120),
        ban_after: 8,
        ban_duration: Duration::from_secs(300),
        ..LimitsConfig::default()
    }
}

#[test]
fn delay_curve_doubles_from_initial_and_is_capped() {
    let (two, fifteen) = (Duration::from_secs(2), Duration::from_secs(15));
    let curve: Vec<u64> = (0..7)
        .map(|n| failure_delay(n, two, fifteen).as_secs())
        .collect();
    assert_eq!(curve, [0, 2, 4, 8, 15, 15, 15]);
    assert_eq!(failure_delay(u64::MAX, two, fifteen), fifteen);
    assert_eq!(failure_delay(5, Duration::ZERO, fifteen), Duration::ZERO);
}

#[test]
fn networks_are_slash_24_and_slash_64() {
    assert_eq!(network_of(ip("192.0.2.77")), "192.0.2.0/24");
    assert_eq!(network_of(ip("::ffff:192.0.2.77")), "192.0.2.0/24");
    assert_eq!(network_of(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains(ip("10.200.1.1")) && !net.contains(ip("11.0.0.1")));
    assert!(net.contains(ip("::ffff:10.0.0.1")));
    let one: IpNet = "2001:db8::1".parse().unwrap();
    assert!(one.contains(ip("2001:db8::1")) && !one.contains(ip("2001:db8::2")));
    assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    assert!("nonsense".parse::<IpNet>().is_err());
}

#[tokio::test]
async fn delay_grows_with_failures_from_the_address_and_resets_after_the_window() {
    let limiter = Limiter::in_memory(small());
    let mut delays = Vec::new();
    for i in 0..5 {
        let pw = format!("guess{i}");
        let v = limiter
            .auth_failed(ip("198.51.100.7"), "alice", Some(pw.as_bytes()), T0)
            .await;
        delays.push(v.delay.as_millis());
    }
    assert_eq!(delays, [100, 200, 400, 700, 700]);
    // Two windows later nothing is remembered.
    let later = T0 + Duration::from_secs(121);
    let v = limiter
        .auth_failed(ip("198.51.100.7"), "alice", Some(b"again"), later)
        .await;
    assert_eq!((v.address_failures, v.delay.as_millis()), (1, 100));
}

#[tokio::test]
async fn a_neighbour_in_the_same_network_is_slowed_by_a_spray() {
    let limiter = Limiter::in_memory(small());
    for i in 0..8u8 {
        let addr = ip(&format!("203.0.113.{}", 10 + i));
        limiter.auth_failed(addr, "bob", None, T0).await;
    }
    let v = limiter
        .auth_failed(ip("203.0.113.200"), "carol", None, T0)
        .await;
    // 9 failures in the /24 weigh as ceil(9/4) = 3: 100 * 2^2 ms.
    assert_eq!((v.address_failures, v.network_failures), (1, 9));
    assert_eq!(v.delay, Duration::from_millis(400));
}

#[tokio::test]
async fn the_same_wrong_password_repeated_is_stale_and_not_counted_again() {
    let limiter = Limiter::in_memory(small());
    let office = ip("192.0.2.10");
    let first = limiter
        .auth_failed(office, "dave", Some(b"old-pw"), T0)
        .await;
    assert!(!first.stale);
    for _ in 0..20 {
        let v = limiter
            .auth_failed(office, "dave", Some(b"old-pw"), T0)
            .await;
        assert!(v.stale);
        assert_eq!(v.address_failures, 1);
        assert!(v.banned.is_none() && !v.cooldown);
        assert_eq!(v.delay, Duration::from_millis(100), "still slowed");
    }
    assert_eq!(
        limiter.before_auth(office, "dave", T0).await,
        AuthGate::Proceed
    );
    assert!(limiter.banned(office, T0).await.is_none());
}

#[tokio::test]
async fn user_cool_down_spares_addresses_that_logged_in_before() {
    let limiter = Limiter::in_memory(small());
    let home = ip("192.0.2.1");
    limiter.auth_succeeded(home, "Erin", T0).await;
    // A botnet: one failure each from many addresses.
    for i in 0..5u8 {
        let bot = ip(&format!("198.18.{i}.1"));
        let v = limiter.auth_failed(bot, "erin", None, T0).await;
        assert_eq!(v.cooldown, i == 4, "failure {i}");
        assert!(v.banned.is_none());
    }
    assert_eq!(
        limiter.before_auth(ip("198.18.9.9"), "erin", T0).await,
        AuthGate::CoolDown
    );
    assert_eq!(
        limiter.before_auth(home, "erin", T0).await,
        AuthGate::Proceed
    );
    // A refused stranger waits as its next failure would, counting nothing.
    let stranger = ip("198.18.9.9");
    for _ in 0..2 {
        let wait = limiter.refusal_delay(stranger, T0).await;
        assert_eq!(wait, Duration::from_millis(100));
    }
    let bot = limiter.refusal_delay(ip("198.18.0.1"), T0).await;
    assert_eq!(bot, Duration::from_millis(200));
    assert_eq!(
        limiter.before_auth(ip("198.18.9.9"), "frank", T0).await,
        AuthGate::Proceed
    );
    let after = T0 + Duration::from_secs(121);
    assert_eq!(
        limiter.before_auth(ip("198.18.9.9"), "erin", after).await,
        AuthGate::Proceed
    );
}

#[tokio::test]
async fn an_address_is_banned_after_m_failures_and_the_ban_expires() {
    let limiter = Limiter::in_memory(small());
    let guesser = ip("198.51.100.66");
    let mut banned_at = None;
    for i in 1..=8u64 {
        let user = format!("user{i}");
        let v = limiter.auth_failed(guesser, &user, None, T0).await;
        if v.banned.is_some() {
            banned_at = Some(i);
        }
    }
    assert_eq!(banned_at, Some(8));
    let ban = limiter.banned(guesser, T0).await.expect("banned");
    assert!(ban.reason.contains("8 failed logins"), "{}", ban.reason);
    assert!(matches!(
        limiter.admit(guesser, T0).await,
        Admission::Banned(_)
    ));
    let expired = T0 + Duration::from_secs(301);
    assert!(matches!(
        limiter.admit(guesser, expired).await,
        Admission::Admitted(_)
    ));
    assert!(
        limiter.unban(guesser).await.unwrap() || limiter.banned(guesser, expired).await.is_none()
    );
}

#[tokio::test]
async fn the_allow_list_always_wins() {
    let config = LimitsConfig {
        allow: vec!["192.0.2.0/24".parse().unwrap()],
        max_connections_per_address: 1,
        ..small()
    };
    let limiter = Limiter::in_memory(config);
    let trusted = ip("192.0.2.50");
    for i in 0..30 {
        let v = limiter
            .auth_failed(trusted, &format!("u{}", i % 3), None, T0)
            .await;
        assert!(v.banned.is_none());
    }
    limiter
        .ban(Ban {
            ip: trusted,
            reason: "manual".into(),
            created_ms: 0,
            expires_ms: u64::MAX,
        })
        .await;
    let a = limiter.admit(trusted, T0).await;
    let b = limiter.admit(trusted, T0).await;
    assert!(matches!(
        (&a, &b),
        (Admission::Admitted(_), Admission::Admitted(_))
    ));
    assert_eq!(
        limiter.before_auth(trusted, "u0", T0).await,
        AuthGate::Proceed
    );
}

#[tokio::test]
async fn concurrent_connections_and_connection_rate_per_address() {
    let config = LimitsConfig {
        max_connections_per_address: 2,
        max_connection_rate: 3,
        ..small()
    };
    let limiter = Limiter::in_memory(config);
    let a = ip("192.0.2.9");
    let first = limiter.admit(a, T0).await;
    let second = limiter.admit(a, T0).await;
    assert!(matches!(
        limiter.admit(a, T0).await,
        Admission::TooManyConnections
    ));
    assert!(matches!(
        limiter.admit(ip("192.0.2.10"), T0).await,
        Admission::Admitted(_)
    ));
    drop(first);
    // The fourth connection in the window is one too many.
    assert!(matches!(limiter.admit(a, T0).await, Admission::TooFast));
    drop(second);
    let later = T0 + Duration::from_secs(121);
    assert!(matches!(
        limiter.admit(a, later).await,
        Admission::Admitted(_)
    ));
}

#[test]
fn ban_file_round_trip_drops_expired_bans() {
    let dir = tempfile::tempdir().unwrap();
    let file = BanFile::new(dir.path().join("bans.json"));
    assert!(file.load().unwrap().is_empty());
    let ban = |addr: &str, expires_ms| Ban {
        ip: ip(addr),
        reason: "test".into(),
        created_ms: T0.millis(),
        expires_ms,
    };
    file.add(ban("192.0.2.1", T0.millis() + 1000), T0).unwrap();
    file.add(ban("192.0.2.2", T0.millis() + 5000), T0).unwrap();
    assert_eq!(file.load().unwrap().len(), 2);
    let later = T0 + Duration::from_secs(2);
    file.add(ban("192.0.2.3", T0.millis() + 9000), later)
        .unwrap();
    let ips: Vec<IpAddr> = file.load().unwrap().iter().map(|b| b.ip).collect();
    assert_eq!(ips, [ip("192.0.2.2"), ip("192.0.2.3")]);
    assert!(file.remove(ip("192.0.2.2"), later).unwrap());
    assert!(!file.remove(ip("192.0.2.2"), later).unwrap());
}

#[cfg(unix)]
#[test]
#[allow(unsafe_code)] // libc, see the SAFETY note below
fn the_ban_file_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.json");
    let file = BanFile::new(&path);
    let ban = Ban {
        ip: ip("192.0.2.1"),
        reason: "test".into(),
        created_ms: T0.millis(),
        expires_ms: T0.millis() + 1000,
    };
    file.add(ban, T0).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn sliding_window_estimate_weights_the_previous_bucket() {
    let w = Duration::from_secs(60);
    // Start of a bucket: the whole previous bucket is inside the window.
    assert_eq!(memory::estimate(1, 10, w, Timestamp(60_000)), 11);
    // Half-way: half of it.
    assert_eq!(memory::estimate(1, 10, w, Timestamp(90_000)), 6);
}

/// Script mechanisms and tokens without `a=` have no user name: their
/// failures count against the address, never against a shared "" user
/// whose cool-down would then refuse every such login from anywhere.
#[tokio::test]
async fn failures_without_a_user_name_never_cool_down_everyone() {
    let limiter = Limiter::in_memory(small());
    for i in 0..7u8 {
        let addr = ip(&format!("198.51.100.{}", 20 + i));
        let v = limiter.auth_failed(addr, "", None, T0).await;
        assert!(!v.cooldown);
    }
    assert_eq!(
        limiter.before_auth(ip("192.0.2.99"), "", T0).await,
        AuthGate::Proceed
    );
}

/// Parallel connections each hold one guess in flight: the guesses
/// admitted before the ban may not outnumber `ban_after`.
#[tokio::test]
async fn parallel_attempts_never_verify_more_than_ban_after_guesses() {
    let limiter = Limiter::in_memory(small());
    let guesser = ip("198.51.100.70");
    let mut slots = Vec::new();
    for i in 0..8 {
        match limiter.admit_attempt(guesser, &format!("u{i}"), T0).await {
            Attempt::Proceed(slot) => slots.push(slot),
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert!(matches!(
        limiter.admit_attempt(guesser, "u9", T0).await,
        Attempt::Saturated
    ));
    for (i, slot) in slots.into_iter().enumerate() {
        let v = limiter
            .auth_failed(guesser, &format!("u{i}"), None, T0)
            .await;
        drop(slot);
        assert_eq!(v.banned.is_some(), i == 7, "failure {i}");
    }
    assert!(matches!(
        limiter.admit_attempt(guesser, "alice", T0).await,
        Attempt::Banned(_)
    ));
    // Another address is not concerned.
    assert!(matches!(
        limiter
            .admit_attempt(ip("198.51.100.71"), "alice", T0)
            .await,
        Attempt::Proceed(_)
    ));
}

/// A botnet guessing one user in parallel gets `user_max_failures`
/// verified guesses per cool-down, not one per connection; an address
/// that logged in as the user before is never held back.
#[tokio::test]
async fn parallel_attempts_for_one_user_stop_at_the_cool_down() {
    let limiter = Limiter::in_memory(small());
    let home = ip("192.0.2.1");
    limiter.auth_succeeded(home, "erin", T0).await;
    let mut slots = Vec::new();
    for i in 0..5u8 {
        let bot = ip(&format!("198.18.{i}.1"));
        match limiter.admit_attempt(bot, "Erin", T0).await {
            Attempt::Proceed(slot) => slots.push(slot),
            other => panic!("bot {i}: {other:?}"),
        }
    }
    assert!(matches!(
        limiter.admit_attempt(ip("198.18.9.1"), "erin", T0).await,
        Attempt::Saturated
    ));
    assert!(matches!(
        limiter.admit_attempt(home, "erin", T0).await,
        Attempt::Proceed(_)
    ));
    // An attempt that ends without a failure frees its place.
    slots.pop();
    assert!(matches!(
        limiter.admit_attempt(ip("198.18.9.1"), "erin", T0).await,
        Attempt::Proceed(_)
    ));
}

#[tokio::test]
async fn bans_made_or_reloaded_change_the_generation() {
    let limiter = Limiter::in_memory(small());
    let start = limiter.ban_generation();
    let guesser = ip("198.51.100.80");
    for i in 0..8 {
        limiter
            .auth_failed(guesser, &format!("u{i}"), None, T0)
            .await;
    }
    let after_ban = limiter.ban_generation();
    assert_ne!(start, after_ban);
    assert!(limiter.enforced_ban(guesser, T0).await.is_some());
    limiter.reload_bans(Vec::new());
    assert_ne!(limiter.ban_generation(), after_ban);
    assert!(limiter.enforced_ban(guesser, T0).await.is_none());
    let config = LimitsConfig {
        allow: vec!["198.51.100.0/24".parse().unwrap()],
        ..small()
    };
    let allowing = Limiter::in_memory(config);
    allowing
        .ban(Ban {
            ip: guesser,
            reason: "manual".into(),
            created_ms: 0,
            expires_ms: u64::MAX,
        })
        .await;
    assert!(allowing.enforced_ban(guesser, T0).await.is_none());
}

/// One host with many addresses in a /24 (or a /64) cannot take every
/// connection slot: the network has its own cap beside the address's.
#[tokio::test]
async fn open_connections_per_network_are_capped_beside_per_address() {
    let config = LimitsConfig {
        max_connections_per_address: 2,
        max_connections_per_network: 3,
        max_connection_rate: 0,
        ..small()
    };
    let limiter = Limiter::in_memory(config);
    let mut slots = Vec::new();
    for last in 1..=3 {
        match limiter.admit(ip(&format!("192.0.2.{last}")), T0).await {
            Admission::Admitted(slot) => slots.push(slot),
            other => panic!("192.0.2.{last}: {other:?}"),
        }
    }
    assert!(matches!(
        limiter.admit(ip("192.0.2.4"), T0).await,
        Admission::TooManyFromNetwork
    ));
    assert!(matches!(
        limiter.admit(ip("192.0.3.4"), T0).await,
        Admission::Admitted(_)
    ));
    slots.pop();
    assert!(matches!(
        limiter.admit(ip("192.0.2.4"), T0).await,
        Admission::Admitted(_)
    ));
    // IPv6: the /64 is the network.
    let a = limiter.admit(ip("2001:db8:1:2::1"), T0).await;
    let b = limiter.admit(ip("2001:db8:1:2::2"), T0).await;
    let c = limiter.admit(ip("2001:db8:1:2::3"), T0).await;
    assert!(matches!(
        (&a, &b, &c),
        (
            Admission::Admitted(_),
            Admission::Admitted(_),
            Admission::Admitted(_)
        )
    ));
    assert!(matches!(
        limiter.admit(ip("2001:db8:1:2::4"), T0).await,
        Admission::TooManyFromNetwork
    ));
    assert!(matches!(
        limiter.admit(ip("2001:db8:1:3::4"), T0).await,
        Admission::Admitted(_)
    ));
}

/// The reservation only holds back attempts beside others in flight: a
/// lone attempt after a short ban ended (failures still in the window) is
/// checked as it always was.
#[tokio::test]
async fn a_lone_attempt_after_a_ban_ends_is_checked() {
    let config = LimitsConfig {
        ban_duration: Duration::from_secs(10),
        ..small()
    };
    let limiter = Limiter::in_memory(config);
    let guesser = ip("198.51.100.90");
    for i in 0..8 {
        limiter
            .auth_failed(guesser, &format!("u{i}"), None, T0)
            .await;
    }
    let later = T0 + Duration::from_secs(11);
    let lone = limiter.admit_attempt(guesser, "u9", later).await;
    assert!(matches!(lone, Attempt::Proceed(_)), "{lone:?}");
    assert!(matches!(
        limiter.admit_attempt(guesser, "u10", later).await,
        Attempt::Saturated
    ));
}
