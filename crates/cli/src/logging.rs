//! The log: text lines (default) or JSON lines (`--log-json`) on stderr.
//!
//! Many fields carry what a client chose: user names and authzids from
//! AUTH (before anyone checked them), HELO names, XCLIENT and PROXY
//! addresses, header values, script output. Written raw, a `\n` in a
//! PLAIN authcid starts a new line that reads like our own (`...
//! result="accepted"`), and an ESC drives the terminal of whoever reads
//! the log. So every field value and message of the text log goes through
//! [`Escaped`], which writes control characters as escapes (`\n`,
//! `\u{1b}`): one record stays one line, whatever it contains.
//!
//! The escaping sits in the field formatter, not at each call site: a
//! wrapper at the call site is one more thing every new `tracing::warn!`
//! must remember (and one log site without it is enough), while the
//! formatter sees every field of every event, from our crates, from
//! scripts and from libraries alike. The JSON log needs nothing: JSON
//! strings escape control characters already.

use std::fmt::{self, Write as _};

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};

/// Sets up the global subscriber, filtered by `PORTCULLIS_LOG` (default
/// `info`).
pub(crate) fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        let fields = format::debug_fn(write_field).delimited(" ");
        builder.fmt_fields(fields).init();
    }
}

/// One field as the default text format writes it (`name=value`, the
/// message bare, `log.*` bookkeeping of bridged `log` records left out),
/// with the value escaped.
fn write_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let name = field.name();
    if name.starts_with("log.") {
        return Ok(());
    }
    if name != "message" {
        write!(writer, "{}=", name.strip_prefix("r#").unwrap_or(name))?;
    }
    write!(Escaped(writer), "{value:?}")
}

/// A writer that passes text on with every character a log reader could
/// take for something else escaped: control characters (C0, DEL, C1), the
/// Unicode line and paragraph separators, and the bidirectional controls
/// that reorder what a terminal shows. Everything else, backslashes
/// included, is passed on as it is.
pub(crate) struct Escaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, c) in text.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&text[plain..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            plain = at + c.len_utf8();
        }
        self.0.write_str(&text[plain..])
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write!(Escaped(&mut out), "{text}").expect("a String takes any text");
        out
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        assert_eq!(escaped("alice@example.test"), "alice@example.test");
        assert_eq!(escaped("Grüße, 日本 \\n"), "Grüße, 日本 \\n");
        assert_eq!(
            escaped("mallory\n2026-01-01 INFO auth result=\"accepted\""),
            "mallory\\n2026-01-01 INFO auth result=\"accepted\""
        );
        assert_eq!(
            escaped("\x1b[2K\r\t\0\x7f"),
            "\\u{1b}[2K\\r\\t\\u{0}\\u{7f}"
        );
        assert_eq!(escaped("a\u{9b}b\u{85}c"), "a\\u{9b}b\\u{85}c");
        assert_eq!(
            escaped("x\u{2028}y\u{202e}z\u{2066}"),
            "x\\u{2028}y\\u{202e}z\\u{2066}"
        );
    }

    #[test]
    fn a_log_record_with_a_forged_line_stays_one_line() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("test buffer").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || sink.clone())
            .fmt_fields(format::debug_fn(write_field).delimited(" "))
            .finish();
        let user = "mallory\nINFO auth user=ceo result=\"accepted\"\x1b[2K";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(%user, result = "rejected", "auth {}", "\u{85}");
        });
        let text = String::from_utf8(buffer.0.lock().expect("test buffer").clone())
            .expect("the log is UTF-8");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.ends_with(
                "auth \\u{85} user=mallory\\nINFO auth user=ceo result=\"accepted\"\\u{1b}[2K result=\"rejected\"\n"
            ),
            "{text:?}"
        );
    }
}
