use std::time::{Duration, Instant};

use mlua::{Function, Lua, Table};

use super::*;

/// Each case is a function of `S`, a string library; its results (or its
/// failure) must be the same with Lua's C functions and with ours.
const CASES: &str = r#"
local function all(iter) local r = {} for a, b in iter do r[#r + 1] = tostring(a) .. '/' .. tostring(b) end return table.concat(r, ',') end
return {
  function(S) return S.find('hello world', 'o w') end,
  function(S) return S.find('hello', 'l+') end,
  function(S) return S.find('hello', '(h)(e)') end,
  function(S) return S.find('hello', '()ll()') end,
  function(S) return S.find('abc', 'b', -1) end,
  function(S) return S.find('abc', 'b', -2) end,
  function(S) return S.find('abc', 'b', -10) end,
  function(S) return S.find('abc', '', 10) end,
  function(S) return S.find('abc', '', 4) end,
  function(S) return S.find('abc', '', 0) end,
  function(S) return S.find('a.b', '.', 1, true) end,
  function(S) return S.find('a+b', '+', 1, true) end,
  function(S) return S.find('a+b', 'x', 1, true) end,
  function(S) return S.find('abc', '') end,
  function(S) return S.find('', '') end,
  function(S) return S.find(12345, 34) end,
  function(S) return S.find('  x', '^%s*') end,
  function(S) return S.find('x = 1', '^(%w+)%s*=%s*(%w+)$') end,
  function(S) return S.find('THE (quick) fox', '%((%a+)%)') end,
  function(S) return S.find('f[[x]]y', '%b[]') end,
  function(S) return S.find('f[[x]y', '%b[]') end,
  function(S) return S.find('THE quick', '%f[%a]%a+', 4) end,
  function(S) return S.find('hello hello', '(h%a+) %1') end,
  function(S) return S.find('a]b', '[]]') end,
  function(S) return S.find('a-b', '[a-]+') end,
  function(S) return S.find('zab', '[a-b]+') end,
  function(S) return S.find('abc', '[^a]+') end,
  function(S) return S.find('x%y', '%%') end,
  function(S) return S.find('a\v\tb', '%s+') end,
  function(S) return S.find('AbC1_', '%u%l%U%d%W') end,
  function(S) return S.find('aaa', 'a-b') end,
  function(S) return S.find('aaab', 'a-b') end,
  function(S) return S.find('ab', 'a?b?c?') end,
  function(S) return S.find('abc', '$') end,
  function(S) return S.find('abc', 'c$') end,
  function(S) return S.find('a$c', '$c') end,
  function(S) return S.find('abc', '^b') end,
  function(S) return S.find('abc', '%') end,
  function(S) return S.find('abc', '[a') end,
  function(S) return S.find('abc', '(a') end,
  function(S) return S.find('abc', 'a)') end,
  function(S) return S.find('abc', '%1') end,
  function(S) return S.find('abc', '(a)%2') end,
  function(S) return S.find('abc', '%b') end,
  function(S) return S.find('abc', '%fa') end,
  function(S) return S.find('abc', '(()') end,
  function(S) return S.find('abcabc', '()(b)%2') end,
  function(S) return S.find(string.rep('a', 300), string.rep('a?', 250)) end,
  function(S) return S.match('key = value', '(%w+)%s*=%s*(%w+)') end,
  function(S) return S.match('hello', '.-l') end,
  function(S) return S.match('hello', 'x') end,
  function(S) return S.match('hello', '()e()') end,
  function(S) return S.match('  trim me  ', '^%s*(.-)%s*$') end,
  function(S) return S.match('user@example.com', '^([^@]+)@(.+)$') end,
  function(S) return S.match('hello', '', 3) end,
  function(S) return S.match('hello', 'l', -2) end,
  function(S) return all(S.gmatch('one two  three', '%a+')) end,
  function(S) return all(S.gmatch('k=v, a=b', '(%w+)=(%w+)')) end,
  function(S) return all(S.gmatch('abc', '')) end,
  function(S) return all(S.gmatch('abc', 'a*')) end,
  function(S) return all(S.gmatch('hello', '()')) end,
  function(S) return all(S.gmatch('abc', '.', 2)) end,
  function(S) return all(S.gmatch('abc', '.', -1)) end,
  function(S) return all(S.gmatch('abc', '.', 10)) end,
  function(S) return all(S.gmatch('^a^b', '^.')) end,
  function(S) return S.gsub('hello world', 'o', '0') end,
  function(S) return S.gsub('hello world', '(%w+)', '<%1>') end,
  function(S) return S.gsub('hello', '', '-') end,
  function(S) return S.gsub('abc', '%w', '%0%0') end,
  function(S) return S.gsub('abc', '%w', '%%') end,
  function(S) return S.gsub('abc', '()b', '%1') end,
  function(S) return S.gsub('hello world', '%w+', { hello = 'HI', world = false }) end,
  function(S) return S.gsub('hello world', '%w+', function(w) return w:upper() end) end,
  function(S) return S.gsub('hello world', '%w+', function(w) return nil end) end,
  function(S) return S.gsub('hello world', '(%w+) (%w+)', function(a, b) return b .. ' ' .. a end) end,
  function(S) return S.gsub('a1', '%d', function(d) return d + 1 end) end,
  function(S) return S.gsub('abc', 'b', 5) end,
  function(S) return S.gsub('abc', '^a', 'x') end,
  function(S) return S.gsub('bac', '^a', 'x') end,
  function(S) return S.gsub('aaa', 'a', 'b', 2) end,
  function(S) return S.gsub('aaa', 'a', 'b', 0) end,
  function(S) return S.gsub('abc', 'a*', '-') end,
  function(S) return S.gsub('abc', 'x*', '-') end,
  function(S) return S.gsub('abc', 'b', '%2') end,
  function(S) return S.gsub('abc', 'b', '%x') end,
  function(S) return S.gsub('abc', 'b', '%') end,
  function(S) return S.gsub('abc', 'b', true) end,
  function(S) return S.gsub('abc', 'b', function() return {} end) end,
}
"#;

fn bounded_for_test(lua: &Lua, deadline: &Deadline) -> Table {
    bounded(lua, deadline, 64 * 1024 * 1024).unwrap()
}

fn describe(lua: &Lua, f: &Function, lib: &Table) -> String {
    let describe: Function = lua
        .load(
            "local f, S = ...
             local r = table.pack(pcall(f, S))
             if not r[1] then return 'error' end
             local out = {}
             for i = 2, r.n do out[#out + 1] = type(r[i]) .. ':' .. tostring(r[i]) end
             return table.concat(out, ' ')",
        )
        .into_function()
        .unwrap();
    describe.call((f, lib)).unwrap()
}

#[test]
fn bounded_patterns_answer_as_lua_does() {
    let lua = Lua::new();
    let deadline: Deadline = Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(60))));
    let ours = bounded_for_test(&lua, &deadline);
    let c: Table = lua.globals().get("string").unwrap();
    let cases: Table = lua.load(CASES).eval().unwrap();
    for (i, case) in cases.sequence_values::<Function>().enumerate() {
        let case = case.unwrap();
        let expected = describe(&lua, &case, &c);
        let got = describe(&lua, &case, &ours);
        assert_eq!(got, expected, "case {} differs", i + 1);
    }
}

#[test]
fn bounded_patterns_give_lua_error_messages() {
    let lua = Lua::new();
    let deadline: Deadline = Arc::default();
    lua.globals()
        .set("S", bounded_for_test(&lua, &deadline))
        .unwrap();
    for (call, message) in [
        ("S.find('a', '%')", "malformed pattern (ends with '%')"),
        ("S.find('a', '[a')", "malformed pattern (missing ']')"),
        ("S.find('a', '(a')", "unfinished capture"),
        ("S.find('a', '.)')", "invalid pattern capture"),
        ("S.find('a', '%1')", "invalid capture index %1"),
        ("S.find('a', '%fa')", "missing '[' after '%f' in pattern"),
        (
            "S.gsub('a', 'a', '%x')",
            "invalid use of '%' in replacement string",
        ),
        (
            "S.find(string.rep('a', 300), string.rep('a?', 250))",
            "pattern too complex",
        ),
    ] {
        let error = lua.load(call).exec().expect_err(call).to_string();
        assert!(error.contains(message), "{call}: {error}");
    }
}

#[test]
fn a_pathological_pattern_stops_at_the_deadline() {
    let lua = Lua::new();
    let deadline: Deadline = Arc::new(Mutex::new(Some(
        Instant::now() + Duration::from_millis(200),
    )));
    lua.globals()
        .set("S", bounded_for_test(&lua, &deadline))
        .unwrap();
    for call in [
        "S.find(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b')",
        "S.match(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b')",
        "S.gsub(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b', '')",
        "for _ in S.gmatch(string.rep('a', 40000), '.-.-.-.-.-.-.-.-.-b') do end",
    ] {
        *deadline.lock().unwrap() = Some(Instant::now() + Duration::from_millis(200));
        let started = Instant::now();
        let error = lua.load(call).exec().expect_err(call).to_string();
        assert!(error.contains(TIMED_OUT), "{call}: {error}");
        assert!(started.elapsed() < Duration::from_secs(2), "{call}");
    }
}

#[test]
fn gsub_cannot_outgrow_the_memory_limit() {
    let lua = Lua::new();
    let deadline: Deadline = Arc::default();
    lua.globals()
        .set("S", bounded(&lua, &deadline, 1024 * 1024).unwrap())
        .unwrap();
    let error = lua
        .load("S.gsub(string.rep('a', 10000), '.', string.rep('b', 1000))")
        .exec()
        .expect_err("too large")
        .to_string();
    assert!(error.contains("resulting string too large"), "{error}");
}

/// Random patterns over random subjects, from a small alphabet so that
/// matches, captures, back-references and malformed patterns all occur:
/// our functions must answer exactly as Lua's C ones.
#[test]
fn random_patterns_answer_as_lua_does() {
    const PIECES: &[&str] = &[
        "a", "b", ".", "%a", "%d", "%s", "%S", "[ab]", "[^a]", "[a-c]", "*", "+", "-", "?", "(",
        ")", "()", "%1", "%2", "^", "$", "%b()", "%f[%w]", "%", "[", "]", "%%", "x",
    ];
    const SUBJECT: &[u8] = b"ab1 (a)b\tc%x";
    let lua = Lua::new();
    let deadline: Deadline = Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(600))));
    let ours = bounded_for_test(&lua, &deadline);
    let c: Table = lua.globals().get("string").unwrap();
    let compare: Function = lua
        .load(
            r#"
            local S, s, p, init = ...
            local function all(iter) local r = {} for a, b in iter do r[#r + 1] = tostring(a) .. '/' .. tostring(b) if #r > 50 then break end end return table.concat(r, ',') end
            local out = {}
            for _, f in ipairs {
              function() return S.find(s, p, init) end,
              function() return S.match(s, p, init) end,
              function() return all(S.gmatch(s, p, init)) end,
              function() return S.gsub(s, p, '<%0>') end,
              function() return S.gsub(s, p, function(x) return x and '[' .. tostring(x) .. ']' end) end,
            } do
              local r = table.pack(pcall(f))
              local parts = { tostring(r[1]) }
              if r[1] then for i = 2, r.n do parts[#parts + 1] = tostring(r[i]) end end
              out[#out + 1] = table.concat(parts, ' ')
            end
            return table.concat(out, ' | ')
            "#,
        )
        .into_function()
        .unwrap();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..3000 {
        let pattern: String = (0..1 + next(6))
            .map(|_| PIECES[next(PIECES.len())])
            .collect();
        let start = next(SUBJECT.len());
        let subject = &SUBJECT[start..start + next(SUBJECT.len() - start + 1)];
        let subject = lua.create_string(subject).unwrap();
        let init = next(5) as i64 - 2;
        let args = |lib: &Table| (lib.clone(), subject.clone(), pattern.clone(), init);
        let expected: String = compare.call(args(&c)).unwrap();
        let got: String = compare.call(args(&ours)).unwrap();
        assert_eq!(
            got,
            expected,
            "pattern {pattern:?} subject {:?} init {init}",
            subject.to_string_lossy()
        );
    }
}

/// `cargo test -p portcullis-lua --release -- --ignored --nocapture
/// cost_of_bounded_patterns`: ours against Lua's C matcher on typical
/// policy patterns.
#[test]
#[ignore]
fn cost_of_bounded_patterns() {
    let lua = Lua::new();
    let deadline: Deadline = Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(600))));
    let ours = bounded_for_test(&lua, &deadline);
    let c: Table = lua.globals().get("string").unwrap();
    let bench: Function = lua
        .load(
            r#"
            local S, n = ...
            local line = 'user=alice@example.test ip=192.0.2.7 tenant=blue'
            for i = 1, n do
              assert(S.match(line, '^user=([^@]+)@(%S+)'))
              assert(S.find(line, 'ip=(%d+%.%d+%.%d+%.%d+)'))
              assert(S.gsub(line, '%s+', ' '))
              for k, v in S.gmatch(line, '(%w+)=(%S+)') do end
            end
            "#,
        )
        .into_function()
        .unwrap();
    let n = 20_000;
    for (name, lib) in [("C", &c), ("bounded", &ours)] {
        let started = Instant::now();
        bench.call::<()>((lib.clone(), n)).unwrap();
        println!(
            "{name}: {:?} per round (match, find, gsub, gmatch)",
            started.elapsed() / n
        );
    }
}
