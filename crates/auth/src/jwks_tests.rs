//! The remote key set against small issuers on loopback: one that answers,
//! one that hangs, one that redirects, one that is not there.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// RFC 7517 appendix A.1's public P-256 key, as key id `1`.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"1",
 "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
 "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;

#[derive(Clone, Copy)]
enum Behaviour {
    /// `200` with [`JWKS`].
    Keys,
    /// Reads the request, never answers.
    Hang,
    /// `/jwks` answers `302` to `/elsewhere`, which serves [`JWKS`].
    Redirect,
}

struct Issuer {
    url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicUsize>,
}

impl Issuer {
    fn start(behaviour: Behaviour) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
        let port = listener.local_addr().expect("bound").port();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let requests = Arc::new(AtomicUsize::new(0));
        let (b, r) = (behaviour.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, r) = (b.clone(), r.clone());
                thread::spawn(move || respond(stream, &b, &r));
            }
        });
        Issuer {
            url: format!("http://127.0.0.1:{port}/jwks"),
            behaviour,
            requests,
        }
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("not poisoned") = behaviour;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn respond(mut stream: TcpStream, behaviour: &Mutex<Behaviour>, requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let behaviour = *behaviour.lock().expect("not poisoned");
    let reply = match (behaviour, path.as_str()) {
        (Behaviour::Hang, _) => {
            thread::sleep(Duration::from_secs(30));
            return;
        }
        (Behaviour::Redirect, "/jwks") => {
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".to_string()
        }
        _ => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{JWKS}",
            JWKS.len()
        ),
    };
    let _ = stream.write_all(reply.as_bytes());
}

#[test]
fn keys_are_fetched_once_and_cached() {
    let issuer = Issuer::start(Behaviour::Keys);
    let remote = RemoteJwks::new(&issuer.url, Duration::from_secs(3600));
    for _ in 0..3 {
        assert_eq!(remote.current(Some("1")).map(|k| k.len()), Ok(1));
    }
    assert_eq!(issuer.requests(), 1);
}

#[test]
fn a_redirect_is_not_followed() {
    let issuer = Issuer::start(Behaviour::Redirect);
    let remote = RemoteJwks::new(&issuer.url, Duration::from_secs(3600));
    let answer = remote.current(Some("1"));
    assert!(
        matches!(&answer, Err(KeysUnavailable(why)) if why.contains("302")),
        "{:?}",
        answer.map(|k| k.len())
    );
    assert_eq!(issuer.requests(), 1, "the redirect's target was asked");
}

#[test]
fn an_unreachable_issuer_is_unavailable_not_an_empty_set() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = closed.local_addr().expect("bound").port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/jwks");
    let remote = RemoteJwks::new(&url, Duration::from_secs(3600));
    assert!(remote.current(Some("1")).is_err());
    assert!(remote.current(None).is_err());
}

#[test]
fn parallel_checks_share_one_fetch_from_a_hanging_issuer() {
    let issuer = Issuer::start(Behaviour::Hang);
    let timeout = Duration::from_secs(1);
    let remote = Arc::new(RemoteJwks::with_timeout(&issuer.url, timeout, timeout));
    let started = Instant::now();
    let checks: Vec<_> = (0..4)
        .map(|_| {
            let remote = remote.clone();
            thread::spawn(move || (remote.current(Some("1")).is_err(), started.elapsed()))
        })
        .collect();
    for check in checks {
        let (unavailable, took) = check.join().expect("no panic");
        assert!(unavailable, "a hanging issuer gave us keys");
        assert!(
            took < Duration::from_millis(1900),
            "a check waited {took:?}: fetches were queued behind each other"
        );
    }
    assert_eq!(issuer.requests(), 1, "one fetch at a time");
}

#[test]
fn the_old_set_serves_known_keys_at_once_while_a_refresh_hangs() {
    let issuer = Issuer::start(Behaviour::Keys);
    let timeout = Duration::from_secs(1);
    let remote = RemoteJwks::with_timeout(&issuer.url, timeout, timeout);
    assert!(remote.current(Some("1")).is_ok());
    thread::sleep(Duration::from_millis(1100));
    issuer.set(Behaviour::Hang);
    // The set is stale: this check starts the refresh, and neither it nor
    // the next one waits for it.
    for _ in 0..2 {
        let started = Instant::now();
        assert!(remote.current(Some("1")).is_ok(), "the old set was lost");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "a known key waited {:?} for the refresh",
            started.elapsed()
        );
    }
    // A key id the old set lacks waits for the fetch under way, which
    // fails: it cannot be judged.
    let started = Instant::now();
    assert!(remote.current(Some("2")).is_err());
    assert!(started.elapsed() < Duration::from_millis(1900));
    assert_eq!(issuer.requests(), 2, "one refresh, not one per check");
    assert!(remote.current(Some("1")).is_ok(), "the old set was lost");
}
