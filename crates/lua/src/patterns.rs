//! `string.find`, `string.match`, `string.gmatch` and `string.gsub`,
//! ported from Lua 5.4's `lstrlib.c`, with a step budget.
//!
//! **Why a port.** The deadline hook counts VM instructions, and a C
//! function is one instruction: while Lua's own matcher backtracks, the
//! hook never fires. A pattern such as `'.-.-.-.-.-.-.-.-.-b'` over 40 000
//! bytes takes longer than the universe has left, and the thread running it
//! could not be stopped. The alternatives were weighed:
//!
//! - limits on subject and pattern sizes do not bound backtracking: nine
//!   `.-` over four kilobytes are already hopeless, while a limit strict
//!   enough to stop that (cost estimated as length to the power of the
//!   quantifiers) refuses ordinary parsing patterns such as
//!   `'^(%S+)%s+(%S+)%s+(%S+)$'` on a 200-byte line;
//! - translating patterns to a linear-time regex engine changes subtle
//!   semantics (`%b`, `%f`, back-references have no equivalent).
//!
//! So the matcher is Lua's, step for step, in Rust: same results, same error
//! messages (a differential test checks them against the C original), and a
//! counter that reads the deadline every [`CHECK_EVERY`] steps. Past it the
//! call fails with the same error as the hook's, so the attempt is deferred
//! and the state dropped. Plain `find` uses `memchr`'s linear substring
//! search, and `gsub`'s result is bounded by the state's memory limit (the
//! result is built outside Lua's allocator).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mlua::{Function, Lua, MultiValue, Table, Value};

use crate::sandbox::TIMED_OUT;

/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;
/// Lua's `MAXCCALLS`: how deep the matcher may recurse.
const MAX_DEPTH: usize = 200;
/// Steps between two looks at the clock.
const CHECK_EVERY: u64 = 4096;
const ESC: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// What stops a match early.
enum Stop {
    /// The pattern is malformed or too complex: Lua's message.
    Error(String),
    /// The deadline passed.
    TimedOut,
}

impl From<Stop> for mlua::Error {
    fn from(stop: Stop) -> mlua::Error {
        match stop {
            Stop::Error(message) => mlua::Error::runtime(message),
            Stop::TimedOut => mlua::Error::runtime(TIMED_OUT),
        }
    }
}

fn error<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Error(message.into()))
}

/// The deadline of the call in progress, as the sandbox sets it.
pub(crate) type Deadline = Arc<Mutex<Option<Instant>>>;

/// Counts steps and stops at the deadline.
struct Budget {
    deadline: Option<Instant>,
    steps: u64,
}

impl Budget {
    fn new(deadline: &Deadline) -> Budget {
        // Invariant: the lock is never held across a call into Lua.
        let deadline = *deadline.lock().expect("deadline lock");
        Budget { deadline, steps: 0 }
    }

    fn tick(&mut self) -> Result<(), Stop> {
        self.steps += 1;
        if self.steps % CHECK_EVERY == 0 && self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::TimedOut);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum CapLen {
    Unfinished,
    Position,
    Len(usize),
}

/// Lua's `MatchState`; positions are indices into `src` and `pat`.
struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: usize,
    level: usize,
    capture: [(usize, CapLen); MAX_CAPTURES],
    budget: &'a mut Budget,
}

/// A byte of the pattern, or 0 past its end (C reads the terminating NUL).
fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// `match_class`: `%a`, `%d`, … in the C locale; other characters match
/// themselves.
fn match_class(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace includes the vertical tab, Rust's is_ascii_whitespace not.
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !res
    } else {
        res
    }
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], budget: &'a mut Budget) -> Matcher<'a> {
        Matcher {
            src,
            pat,
            depth: MAX_DEPTH,
            level: 0,
            capture: [(0, CapLen::Unfinished); MAX_CAPTURES],
            budget,
        }
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAX_DEPTH;
    }

    fn class_end(&self, mut p: usize) -> Result<usize, Stop> {
        let pat = self.pat;
        let c = pat[p];
        p += 1;
        match c {
            ESC => {
                if p >= pat.len() {
                    return error("malformed pattern (ends with '%')");
                }
                Ok(p + 1)
            }
            b'[' => {
                if at(pat, p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= pat.len() {
                        return error("malformed pattern (missing ']')");
                    }
                    let c = pat[p];
                    p += 1;
                    if c == ESC && p < pat.len() {
                        p += 1;
                    }
                    if at(pat, p) == b']' {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    /// `matchbracketclass`: `p` at `[`, `ec` at the closing `]`.
    fn bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let pat = self.pat;
        let mut sig = true;
        if at(pat, p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            if pat[p] == ESC {
                p += 1;
                if match_class(c, at(pat, p)) {
                    return sig;
                }
            } else if at(pat, p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if pat[p - 2] <= c && c <= pat[p] {
                    return sig;
                }
            } else if pat[p] == c {
                return sig;
            }
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            ESC => match_class(c, at(self.pat, p + 1)),
            b'[' => self.bracket_class(c, p, ep - 1),
            other => other == c,
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, Stop> {
        if self.depth == 0 {
            return error("pattern too complex");
        }
        self.depth -= 1;
        let result = self.match_here(s, p);
        self.depth += 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, Stop> {
        let pat = self.pat;
        loop {
            self.budget.tick()?;
            if p == pat.len() {
                return Ok(Some(s));
            }
            let next = at(pat, p + 1);
            match pat[p] {
                b'(' if next == b')' => return self.start_capture(s, p + 2, CapLen::Position),
                b'(' => return self.start_capture(s, p + 1, CapLen::Unfinished),
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if next == b'b' && p + 1 < pat.len() => {
                    match self.match_balance(s, p + 2)? {
                        Some(end) => s = end,
                        None => return Ok(None),
                    }
                    p += 4;
                }
                ESC if next == b'f' && p + 1 < pat.len() => {
                    p += 2;
                    if at(pat, p) != b'[' {
                        return error("missing '[' after '%f' in pattern");
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    let current = at(self.src, s);
                    if self.bracket_class(previous, p, ep - 1)
                        || !self.bracket_class(current, p, ep - 1)
                    {
                        return Ok(None);
                    }
                    p = ep;
                }
                ESC if next.is_ascii_digit() && p + 1 < pat.len() => {
                    match self.match_capture(s, next)? {
                        Some(end) => s = end,
                        None => return Ok(None),
                    }
                    p += 2;
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = at(pat, ep);
                    if !self.single_match(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        b'?' => match self.do_match(s + 1, ep + 1)? {
                            Some(end) => return Ok(Some(end)),
                            None => p = ep + 1,
                        },
                        b'+' => return self.max_expand(s + 1, p, ep),
                        b'*' => return self.max_expand(s, p, ep),
                        b'-' => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, Stop> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            self.budget.tick()?;
            i += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Result<Option<usize>, Stop> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single_match(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: CapLen) -> Result<Option<usize>, Stop> {
        if self.level >= MAX_CAPTURES {
            return error("too many captures");
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, Stop> {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| self.capture[l].1 == CapLen::Unfinished)
        else {
            return error("invalid pattern capture");
        };
        self.capture[l].1 = CapLen::Len(s - self.capture[l].0);
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.capture[l].1 = CapLen::Unfinished;
        }
        Ok(result)
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, Stop> {
        if p + 1 >= self.pat.len() {
            return error("malformed pattern (missing arguments to '%b')");
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1;
        for (i, &c) in self.src.iter().enumerate().skip(s + 1) {
            self.budget.tick()?;
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>, Stop> {
        let l = usize::from(digit).wrapping_sub(usize::from(b'1'));
        if l >= self.level || self.capture[l].1 == CapLen::Unfinished {
            return error(format!("invalid capture index %{}", l.wrapping_add(1)));
        }
        let (init, CapLen::Len(len)) = self.capture[l] else {
            return Ok(None);
        };
        let captured = &self.src[init..init + len];
        Ok(self
            .src
            .get(s..s + len)
            .is_some_and(|here| here == captured)
            .then_some(s + len))
    }

    /// `get_onecapture`: capture `i`, or the whole match when there are none.
    fn capture_value(&self, lua: &Lua, i: usize, s: usize, e: usize) -> mlua::Result<Value> {
        if i >= self.level {
            if i != 0 {
                return Err(mlua::Error::runtime(format!(
                    "invalid capture index %{}",
                    i + 1
                )));
            }
            return lua.create_string(&self.src[s..e]).map(Value::String);
        }
        match self.capture[i] {
            (_, CapLen::Unfinished) => Err(mlua::Error::runtime("unfinished capture")),
            (init, CapLen::Position) => Ok(Value::Integer(init as i64 + 1)),
            (init, CapLen::Len(len)) => lua
                .create_string(&self.src[init..init + len])
                .map(Value::String),
        }
    }

    /// `push_captures`: all captures, or the whole match (`whole`) when
    /// the pattern has none.
    fn captures(&self, lua: &Lua, whole: Option<(usize, usize)>) -> mlua::Result<MultiValue> {
        let (s, e) = whole.unwrap_or((0, 0));
        let n = match (self.level, whole) {
            (0, Some(_)) => 1,
            (level, _) => level,
        };
        (0..n).map(|i| self.capture_value(lua, i, s, e)).collect()
    }
}

/// Lua's `posrelatI`: a 1-based start position, counted from the end when
/// negative.
fn start_index(init: Option<i64>, len: usize) -> usize {
    match init.unwrap_or(1) {
        pos if pos > 0 => usize::try_from(pos).unwrap_or(usize::MAX) - 1,
        0 => 0,
        pos if pos.unsigned_abs() > len as u64 => 0,
        pos => len - pos.unsigned_abs() as usize,
    }
}

fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Nil | Value::Boolean(false))
}

/// `string.find` (`find`) and `string.match`.
fn find_or_match(
    lua: &Lua,
    deadline: &Deadline,
    find: bool,
    (s, p, init, plain): (mlua::String, mlua::String, Option<i64>, Value),
) -> mlua::Result<MultiValue> {
    let (s, p) = (s.as_bytes(), p.as_bytes());
    let (src, mut pat) = (&s[..], &p[..]);
    let init = start_index(init, src.len());
    if init > src.len() {
        return Ok(MultiValue::from_iter([Value::Nil]));
    }
    if find && (truthy(&plain) || !pat.iter().any(|c| SPECIALS.contains(c))) {
        if let Some(at) = memchr::memmem::find(&src[init..], pat) {
            let start = init + at;
            return Ok(MultiValue::from_iter([
                Value::Integer(start as i64 + 1),
                Value::Integer((start + pat.len()) as i64),
            ]));
        }
        return Ok(MultiValue::from_iter([Value::Nil]));
    }
    let anchor = pat.first() == Some(&b'^');
    if anchor {
        pat = &pat[1..];
    }
    let mut budget = Budget::new(deadline);
    let mut m = Matcher::new(src, pat, &mut budget);
    let mut start = init;
    loop {
        m.reset();
        if let Some(end) = m.do_match(start, 0)? {
            if !find {
                return m.captures(lua, Some((start, end)));
            }
            let mut values = MultiValue::from_iter([
                Value::Integer(start as i64 + 1),
                Value::Integer(end as i64),
            ]);
            values.extend(m.captures(lua, None)?);
            return Ok(values);
        }
        start += 1;
        if anchor || start > src.len() {
            return Ok(MultiValue::from_iter([Value::Nil]));
        }
    }
}

/// `string.gmatch`: an iterator that owns its subject and position.
fn gmatch(
    lua: &Lua,
    deadline: &Deadline,
    (s, p, init): (mlua::String, mlua::String, Option<i64>),
) -> mlua::Result<Function> {
    let src = s.as_bytes().to_vec();
    let pat = p.as_bytes().to_vec();
    let mut position = start_index(init, src.len()).min(src.len() + 1);
    let mut last_match: Option<usize> = None;
    let deadline = deadline.clone();
    lua.create_function_mut(move |lua, ()| {
        let mut budget = Budget::new(&deadline);
        let mut m = Matcher::new(&src, &pat, &mut budget);
        while position <= src.len() {
            m.reset();
            let start = position;
            position += 1;
            match m.do_match(start, 0)? {
                Some(end) if Some(end) != last_match => {
                    position = end;
                    last_match = Some(end);
                    return m.captures(lua, Some((start, end)));
                }
                _ => {}
            }
        }
        Ok(MultiValue::new())
    })
}

/// `string.gsub`. The result may not outgrow `limit` bytes.
fn gsub(
    lua: &Lua,
    deadline: &Deadline,
    limit: usize,
    (s, p, repl, max): (mlua::String, mlua::String, Value, Option<i64>),
) -> mlua::Result<(Value, i64)> {
    let src = s.as_bytes().to_vec();
    let pat_bytes = p.as_bytes().to_vec();
    let mut pat = &pat_bytes[..];
    match &repl {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {}
        Value::Table(_) | Value::Function(_) => {}
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )))
        }
    }
    let template = match &repl {
        Value::Table(_) | Value::Function(_) => None,
        other => lua
            .coerce_string(other.clone())?
            .map(|t| t.as_bytes().to_vec()),
    };
    let max = max.unwrap_or(src.len() as i64 + 1);
    let anchor = pat.first() == Some(&b'^');
    if anchor {
        pat = &pat[1..];
    }
    let mut budget = Budget::new(deadline);
    let mut m = Matcher::new(&src, pat, &mut budget);
    let mut out = Vec::new();
    let (mut at, mut n, mut changed) = (0usize, 0i64, false);
    let mut last_match = None;
    while n < max {
        m.reset();
        match m.do_match(at, 0)? {
            Some(end) if Some(end) != last_match => {
                n += 1;
                changed |= add_value(lua, &m, &mut out, at, end, &repl, template.as_deref())?;
                at = end;
                last_match = Some(end);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if out.len() > limit {
            return Err(mlua::Error::runtime("resulting string too large"));
        }
        if anchor {
            break;
        }
    }
    if !changed {
        return Ok((Value::String(s), n));
    }
    out.extend_from_slice(&src[at..]);
    Ok((Value::String(lua.create_string(&out)?), n))
}

/// `add_value`: appends the replacement of the match `s..e`; `false` when
/// the original text was kept.
fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    repl: &Value,
    template: Option<&[u8]>,
) -> mlua::Result<bool> {
    let value = match repl {
        Value::Function(f) => f
            .call::<MultiValue>(m.captures(lua, Some((s, e)))?)?
            .into_iter()
            .next()
            .unwrap_or(Value::Nil),
        Value::Table(t) => t.get::<Value>(m.capture_value(lua, 0, s, e)?)?,
        _ => {
            // Invariant: a string or number `repl` has a template.
            add_template(lua, m, out, s, e, template.unwrap_or_default())?;
            return Ok(true);
        }
    };
    if !truthy(&value) {
        out.extend_from_slice(&m.src[s..e]);
        return Ok(false);
    }
    match value {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {
            let text = lua.coerce_string(value)?.ok_or_else(|| {
                mlua::Error::runtime("invalid replacement value (a string expected)")
            })?;
            out.extend_from_slice(&text.as_bytes());
            Ok(true)
        }
        other => Err(mlua::Error::runtime(format!(
            "invalid replacement value (a {})",
            other.type_name()
        ))),
    }
}

/// `add_s`: a replacement string with `%0`–`%9` and `%%`.
fn add_template(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    template: &[u8],
) -> mlua::Result<()> {
    let mut rest = template;
    while let Some(i) = memchr::memchr(ESC, rest) {
        out.extend_from_slice(&rest[..i]);
        let c = at(rest, i + 1);
        match c {
            ESC => out.push(ESC),
            b'0' => out.extend_from_slice(&m.src[s..e]),
            b'1'..=b'9' => {
                let value = m.capture_value(lua, usize::from(c - b'1'), s, e)?;
                let text = lua
                    .coerce_string(value)?
                    .ok_or_else(|| mlua::Error::runtime("invalid capture value"))?;
                out.extend_from_slice(&text.as_bytes());
            }
            _ => {
                return Err(mlua::Error::runtime(
                    "invalid use of '%' in replacement string",
                ))
            }
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// The four bounded functions, in a table keyed by their names.
pub(crate) fn bounded(lua: &Lua, deadline: &Deadline, memory_limit: usize) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let d = deadline.clone();
    t.set(
        "find",
        lua.create_function(move |lua, args| find_or_match(lua, &d, true, args))?,
    )?;
    let d = deadline.clone();
    t.set(
        "match",
        lua.create_function(move |lua, (s, p, init)| {
            find_or_match(lua, &d, false, (s, p, init, Value::Nil))
        })?,
    )?;
    let d = deadline.clone();
    t.set(
        "gmatch",
        lua.create_function(move |lua, args| gmatch(lua, &d, args))?,
    )?;
    let d = deadline.clone();
    t.set(
        "gsub",
        lua.create_function(move |lua, args| gsub(lua, &d, memory_limit, args))?,
    )?;
    Ok(t)
}

/// Replaces the four pattern functions of `string` (and so of string
/// methods, `s:find(…)`) with the bounded ones.
pub(crate) fn install(lua: &Lua, deadline: &Deadline, memory_limit: usize) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    for pair in bounded(lua, deadline, memory_limit)?.pairs::<String, Function>() {
        let (name, f) = pair?;
        string.set(name, f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
