//! KumoMTA's library calls as a policy file uses them: serde, digests,
//! encodings, the HTTP client, memoize's options.

use crate::tests::{decide, policy, policy_reaching, request};
use crate::*;

/// What the hook put in `data`, for a script that accepts everyone.
fn data_of(p: &Policy) -> serde_json::Value {
    match decide(p, &request("PLAIN", "u", "p", None)) {
        Verdict::Accept { user_data, .. } => user_data.expect("data"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_and_toml_helpers_under_both_names() {
    let (dir, _) = policy("");
    std::fs::write(
        dir.path().join("users.json"),
        r#"{"alice": {"plan": "gold"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("plans.toml"), "[gold]\nrate = 100\n").unwrap();
    let script = format!(
        "local users = kumo.json_load('{d}/users.json')\n\
         local plans = kumo.serde.toml_load('{d}/plans.toml')\n\
         portcullis.on('smtp_server_auth', function(auth)\n\
           local parsed = kumo.json_parse('{{\"a\": [1, 2, null], \"b\": \"x\"}}')\n\
           local again = kumo.serde.json_parse(kumo.serde.json_encode({{ k = 'v' }}))\n\
           return portcullis.accept{{ data = {{\n\
             plan = users.alice.plan, rate = plans.gold.rate, a2 = parsed.a[2], b = parsed.b,\n\
             k = again.k, toml = kumo.toml_parse(kumo.serde.toml_encode({{ x = 1 }})).x,\n\
             encoded = kumo.json_encode({{ 1, 2 }}) }} }}\n\
         end)",
        d = dir.path().display()
    );
    let (_d, p) = policy_reaching(&script, &[dir.path()]);
    assert_eq!(
        data_of(&p.unwrap()),
        serde_json::json!({"plan": "gold", "rate": 100, "a2": 2, "b": "x", "k": "v",
            "toml": 1, "encoded": "[1,2]"})
    );
}

#[test]
fn json_load_reaches_only_allowed_paths_and_bounded_text() {
    let (_d, p) = policy("kumo.json_load('/etc/passwd')");
    let message = p.err().expect("refused").to_string();
    assert!(message.contains("outside the directories"), "{message}");
    let (_d, p) = policy("kumo.json_parse(string.rep(' ', 5 * 1024 * 1024))");
    let message = p.err().expect("refused").to_string();
    assert!(message.contains("longer than"), "{message}");
    let (_d, p) = policy("kumo.json_parse('{not json')");
    assert!(p.is_err());
}

#[test]
fn digests_and_encodings_as_kumomta_names_them() {
    let (_d, p) = policy(
        "portcullis.on('smtp_server_auth', function(auth)\n\
           local d = kumo.digest.sha256('hello')\n\
           return portcullis.accept{ data = {\n\
             hex = d.hex, b64 = d.base64, b64u = d.base64url_nopad, str = tostring(kumo.digest.sha1('hello')),\n\
             md5 = kumo.digest.md5('hello').hex, multi = kumo.digest.sha256('hel', 'lo').hex,\n\
             json = kumo.digest.sha256({ 1 }).hex, len = #kumo.digest.sha512('x').bytes,\n\
             b32 = kumo.encode.base32_encode('hi'), hex2 = kumo.encode.hex_encode('hi'),\n\
             back = kumo.encode.base64_decode(kumo.encode.base64_encode('\\0bin')),\n\
             dehex = kumo.encode.hex_decode('6869'), bad = pcall(kumo.encode.base64_decode, '!!') } }\n\
         end)",
    );
    let data = data_of(&p.unwrap());
    let sha256_hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert_eq!(data["hex"], sha256_hello);
    assert_eq!(data["multi"], sha256_hello);
    assert_eq!(data["b64"], "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
    assert_eq!(data["b64u"], "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ");
    assert_eq!(data["str"], "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    assert_eq!(data["md5"], "5d41402abc4b2a76b9719d911017c592");
    // A table is digested as its JSON text.
    assert_eq!(
        data["json"],
        "080a9ed428559ef602668b4c00f114f1a11c3f6b02a435f0bdc154578e4d7f22"
    );
    assert_eq!(data["len"], 64);
    assert_eq!(data["b32"], "NBUQ====");
    assert_eq!(data["hex2"], "6869");
    assert_eq!(data["back"], "\u{0}bin");
    assert_eq!(data["dehex"], "hi");
    assert_eq!(data["bad"], false);
}

/// A memoized look-up of `plans.json` (beside the script) with `options`;
/// the hook accepts with the looked-up value as data.
fn memoized(options: &str) -> (tempfile::TempDir, Policy) {
    let (dir, _) = policy("");
    let script = format!(
        "local lookup = kumo.memoize(function(user)\n\
           local ok, plans = pcall(kumo.json_load, '{d}/plans.json')\n\
           if not ok then\n\
             if user == 'hang' then while true do end end\n\
             error('the store is down')\n\
           end\n\
           return plans[user]\n\
         end, {{ name = 'plans', {options} }})\n\
         portcullis.on('smtp_server_auth', function(auth)\n\
           return portcullis.accept{{ data = {{ plan = lookup(auth.user) }} }}\n\
         end)",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("policy.lua"), script).unwrap();
    let mut options_ = PolicyOptions::new(dir.path().join("policy.lua"));
    options_.hook_timeout = std::time::Duration::from_secs(5);
    let p = Policy::load(options_).expect("loads");
    (dir, p)
}

fn plan_of(p: &Policy, user: &str) -> Result<serde_json::Value, Verdict> {
    match decide(p, &request("PLAIN", user, "pw", None)) {
        Verdict::Accept { user_data, .. } => Ok(user_data.expect("data")["plan"].clone()),
        other => Err(other),
    }
}

#[test]
fn memoize_serves_stale_answers_while_the_store_is_down_only_with_allow_stale_reads() {
    for allow in [true, false] {
        let (dir, p) = memoized(&format!(
            "ttl = 0, max_stale = '1 hour', allow_stale_reads = {allow}"
        ));
        let plans = dir.path().join("plans.json");
        std::fs::write(&plans, r#"{"alice": "gold", "bob": "silver"}"#).unwrap();
        assert_eq!(plan_of(&p, "alice").unwrap(), "gold");
        std::fs::remove_file(&plans).unwrap();
        // Expired (ttl 0), and the refresh fails.
        match allow {
            true => assert_eq!(plan_of(&p, "alice").unwrap(), "gold"),
            false => assert!(matches!(
                plan_of(&p, "alice"),
                Err(Verdict::ScriptError { .. })
            )),
        }
        // Never cached: the error.
        assert!(matches!(
            plan_of(&p, "bob"),
            Err(Verdict::ScriptError { .. })
        ));
    }
}

#[test]
fn memoize_stale_window_ends() {
    let (dir, p) = memoized("ttl = 0, max_stale = 0, allow_stale_reads = true");
    let plans = dir.path().join("plans.json");
    std::fs::write(&plans, r#"{"alice": "gold"}"#).unwrap();
    assert_eq!(plan_of(&p, "alice").unwrap(), "gold");
    std::fs::remove_file(&plans).unwrap();
    assert!(plan_of(&p, "alice").is_err());
}

#[test]
fn memoize_populate_timeout_stops_a_hanging_look_up() {
    let (dir, p) = memoized(
        "ttl = 0, max_stale = '1 hour', allow_stale_reads = true, populate_timeout = 0.05",
    );
    let plans = dir.path().join("plans.json");
    std::fs::write(&plans, r#"{"hang": "gold"}"#).unwrap();
    assert_eq!(plan_of(&p, "hang").unwrap(), "gold");
    std::fs::remove_file(&plans).unwrap();
    // The look-up loops; past 50 ms (the hook has 5 s) the stale answer.
    assert_eq!(plan_of(&p, "hang").unwrap(), "gold");
    // Without a stale answer, the look-up's timeout defers the attempt.
    let (dir, p) = memoized("ttl = 0, populate_timeout = 0.05");
    let _ = dir;
    assert!(matches!(plan_of(&p, "hang"), Err(Verdict::Defer { .. })));
}

#[test]
fn memoize_caches_outlive_a_reload_unless_invalidate_with_epoch() {
    for invalidate in [false, true] {
        let (dir, p) = memoized(&format!(
            "ttl = '1 hour', invalidate_with_epoch = {invalidate}"
        ));
        let plans = dir.path().join("plans.json");
        std::fs::write(&plans, r#"{"alice": "gold"}"#).unwrap();
        assert_eq!(plan_of(&p, "alice").unwrap(), "gold");
        std::fs::write(&plans, r#"{"alice": "platinum"}"#).unwrap();
        assert_eq!(plan_of(&p, "alice").unwrap(), "gold");
        p.reload().unwrap();
        let expected = if invalidate { "platinum" } else { "gold" };
        assert_eq!(plan_of(&p, "alice").unwrap(), expected);
    }
}
