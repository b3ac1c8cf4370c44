//! Every SASL mechanism's step machine fed arbitrary client messages.
//!
//! Input: a header line naming the mechanism and the connection, then the
//! client's decoded messages separated by CRLF (in SMTP each is one base64
//! line, so CRLF never needs to be inside one):
//!
//! ```text
//! SCRAM-SHA-256 ir tls plus cert=alice\n
//! <first message>\r\n<second message>\r\n...
//! ```
//!
//! `ir`: the first message is the initial response (`AUTH MECH <ir>`);
//! `tls`: channel-binding data is known; `plus`: -PLUS is offered;
//! `cert=NAME`: a verified client certificate maps to NAME (EXTERNAL).
//!
//! SCRAM gets the RFC 5802 / RFC 7677 example secrets (password `pencil`)
//! and server nonces, so the RFC examples in the corpus reach a verified
//! proof. Beyond "no panic", the target checks what the step machines
//! promise: a bounded number of rounds, credentials of the mechanism's own
//! kind, a non-empty identity, EXTERNAL's identity from the certificate
//! only, a `Verified` SCRAM outcome only for the proof the password makes,
//! and no password or token in the credentials' `Debug`.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use portcullis_sasl::{
    scram, ChannelBinding, Credentials, Exchange, Mechanism, ScramHash, ScramOutcome, ScramSecrets,
    StartContext, Step,
};

const PASSWORD: &[u8] = b"pencil";
const ITERATIONS: u32 = 4096;
const CRAM_CHALLENGE: &str = "<1896.697170952@postoffice.example.net>";

/// Salt and server nonce of the RFC examples, per hash.
fn example(hash: ScramHash) -> (&'static str, &'static str) {
    match hash {
        // RFC 5802 §5.
        ScramHash::Sha1 => ("QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j"),
        // RFC 7677 §3.
        ScramHash::Sha256 => ("W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
    }
}

fn secrets(hash: ScramHash) -> &'static ScramSecrets {
    static SHA1: OnceLock<ScramSecrets> = OnceLock::new();
    static SHA256: OnceLock<ScramSecrets> = OnceLock::new();
    let cell = match hash {
        ScramHash::Sha1 => &SHA1,
        ScramHash::Sha256 => &SHA256,
    };
    cell.get_or_init(|| {
        let salt = STANDARD.decode(example(hash).0).expect("RFC salt");
        ScramSecrets::derive(hash, PASSWORD, salt, ITERATIONS).expect("ASCII password")
    })
}

struct Header<'a> {
    mechanism: Mechanism,
    initial_response: bool,
    tls: bool,
    plus_offered: bool,
    certificate: Option<&'a str>,
}

fn header(line: &[u8]) -> Option<Header<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let mut header = Header {
        mechanism: Mechanism::from_name(words.next()?)?,
        initial_response: false,
        tls: false,
        plus_offered: false,
        certificate: None,
    };
    for word in words {
        match word {
            "ir" => header.initial_response = true,
            "tls" => header.tls = true,
            "plus" => header.plus_offered = true,
            _ => header.certificate = word.strip_prefix("cert=").or(header.certificate),
        }
    }
    Some(header)
}

/// Splits on CRLF; the last piece may be empty only if nothing came before.
fn messages(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        out.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    out.push(rest);
    out
}

fuzz_target!(|input: &[u8]| {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Some(header) = header(&input[..newline]) else {
        return;
    };
    let mut messages = messages(&input[newline + 1..]).into_iter();
    let binding = ChannelBinding {
        tls_exporter: Some(vec![0x11; 32]),
        tls_server_end_point: Some(vec![0x22; 32]),
    };
    let context = StartContext {
        unique_challenge: CRAM_CHALLENGE,
        channel_binding: header.tls.then_some(&binding),
        plus_offered: header.plus_offered,
        external_identity: header.certificate,
    };
    let initial = match header.initial_response {
        true => Some(messages.next().unwrap_or_default().to_vec()),
        false => None,
    };
    let mechanism = header.mechanism;
    // What the client sent, for the SCRAM proof check.
    let mut sent: Vec<&[u8]> = initial.as_deref().into_iter().collect();
    let mut server_first: Option<Vec<u8>> = None;
    let mut step = Exchange::start_with(mechanism, initial.clone(), &context);
    let mut rounds = 0;
    loop {
        match step {
            Err(error) => {
                let _ = error.to_string();
                return;
            }
            Ok(Step::Challenge(exchange, challenge)) => {
                rounds += 1;
                assert!(rounds <= 3, "{mechanism}: more than three challenges");
                if challenge.starts_with(b"r=") {
                    server_first = Some(challenge);
                }
                let Some(message) = messages.next() else {
                    return;
                };
                sent.push(message);
                step = exchange.respond(message.to_vec());
            }
            Ok(Step::NeedSecrets(request)) => {
                let (hash, _) = mechanism.scram().expect("only SCRAM asks for secrets");
                assert_eq!(request.hash(), hash);
                assert!(!request.authcid().is_empty());
                step = request.resume(secrets(hash).clone(), example(hash).1);
            }
            Ok(Step::Done(credentials)) => {
                check(mechanism, &context, &credentials, &sent, server_first);
                return;
            }
        }
    }
});

fn check(
    mechanism: Mechanism,
    context: &StartContext<'_>,
    credentials: &Credentials,
    sent: &[&[u8]],
    server_first: Option<Vec<u8>>,
) {
    let debug = format!("{credentials:?}");
    let _ = (credentials.failure_data(), credentials.success_data());
    match credentials {
        Credentials::Password {
            authcid,
            authzid,
            password,
        } => {
            assert!(mechanism.reveals_password());
            assert!(!authcid.is_empty());
            assert!(authzid.as_deref() != Some(""));
            assert_not_shown(
                &debug,
                password.expose(),
                &[authcid, authzid.as_deref().unwrap_or("")],
            );
        }
        Credentials::CramMd5 {
            authcid, challenge, ..
        } => {
            assert_eq!(mechanism, Mechanism::CramMd5);
            assert!(!authcid.is_empty());
            assert_eq!(challenge, CRAM_CHALLENGE.as_bytes());
        }
        Credentials::Scram {
            authcid,
            hash,
            outcome,
            ..
        } => {
            assert_eq!(mechanism.scram().map(|(h, _)| h), Some(*hash));
            assert!(!authcid.is_empty());
            if let ScramOutcome::Verified { server_final } = outcome {
                assert!(server_final.starts_with(b"v="));
                let server_first = server_first.expect("a verified exchange sent server-first");
                check_proof(*hash, sent, &server_first);
            }
        }
        Credentials::Bearer { user, token } => {
            assert!(mechanism.uses_bearer_token());
            assert!(!token.is_empty());
            assert!(user.as_deref() != Some(""));
            assert_not_shown(&debug, token.expose(), &[user.as_deref().unwrap_or("")]);
        }
        Credentials::External { authcid, authzid } => {
            assert_eq!(mechanism, Mechanism::External);
            assert_eq!(Some(authcid.as_str()), context.external_identity);
            assert!(authzid.as_deref() != Some(""));
        }
        _ => {}
    }
}

/// A `Debug` of credentials never shows the secret (unless the secret is
/// too short to tell, or also the user's name). What is searched is the
/// `Debug` text without its redaction placeholders and public values; a
/// secret made only of the characters `Debug` itself writes (field names,
/// `None`, punctuation) could be read out of that skeleton by chance (the
/// fuzzer built `ser: None, token: Secret(**`), so it is not judged.
fn assert_not_shown(debug: &str, secret: &[u8], public: &[&str]) {
    let Ok(secret) = std::str::from_utf8(secret) else {
        return;
    };
    if secret.len() < 6 || public.iter().any(|p| p.contains(secret)) {
        return;
    }
    let skeleton_only = secret
        .chars()
        .all(|c| c.is_ascii_alphabetic() || " {}():,*\"_".contains(c));
    if skeleton_only {
        return;
    }
    let mut rest = debug.replace("Secret(***)", "");
    // Public values as `Debug` writes them (quoted, control characters
    // escaped) as well as raw: an escape such as `\u{3}` next to the
    // name's own characters can spell a secret by chance (the fuzzer made
    // a name ending `\x03lc[ls` and the password `}lc[ls`).
    for p in public.iter().filter(|p| !p.is_empty()) {
        rest = rest.replace(&format!("{p:?}"), "");
        rest = rest.replace(p, "");
    }
    assert!(!rest.contains(secret), "a secret shows in Debug: {debug}");
}

/// A `Verified` outcome means the client's proof is the one the password
/// makes over this AuthMessage (recomputed here from the client's side).
fn check_proof(hash: ScramHash, sent: &[&[u8]], server_first: &[u8]) {
    let first = std::str::from_utf8(sent[sent.len() - 2]).expect("UTF-8 client-first");
    let last = std::str::from_utf8(sent[sent.len() - 1]).expect("UTF-8 client-final");
    let bare = first.splitn(3, ',').nth(2).expect("client-first-bare");
    let split = last.rfind(",p=").expect("proof");
    let auth_message = format!(
        "{bare},{},{}",
        std::str::from_utf8(server_first).expect("ASCII server-first"),
        &last[..split]
    );
    let salt = STANDARD.decode(example(hash).0).expect("RFC salt");
    let (proof, _) =
        scram::client_proof(hash, PASSWORD, &salt, ITERATIONS, auth_message.as_bytes());
    assert_eq!(
        STANDARD.decode(&last[split + 3..]).expect("base64 proof"),
        proof,
        "verified a proof the password does not make"
    );
}
