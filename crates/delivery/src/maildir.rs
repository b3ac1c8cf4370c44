//! Maildir delivery: one Maildir per recipient under the route's directory.
//!
//! `<path>/<recipient>/{tmp,new,cur}`. The file is written in `tmp/`,
//! fsynced, renamed into `new/`, and `new/` is fsynced, so a delivered
//! message is on disk before the spool entry goes. File names follow the
//! Maildir convention (`time.unique.host`) with the spool id and a random
//! part as the unique part. Blocking: call off the async workers.
//!
//! # The file is a local mail file, not SMTP data
//!
//! Mail readers (mutt, s-nail, Dovecot) expect what Postfix's `virtual` and
//! Dovecot's LMTP write: LF line ends, and the envelope recorded in the
//! header as `Return-Path:` (the sender) and `Delivered-To:` (the
//! recipient) on top. CRLF files make s-nail report "headers and body not
//! separated" and mutt show `^M` in every header. A `Return-Path:` the
//! client wrote is dropped (RFC 5321 §4.4: only the final delivery adds
//! it), so the first one a reader sees is ours.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::message::{header_section_len, is_field};
use crate::DeliveryError;

/// The envelope of one Maildir delivery.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The envelope sender; empty for a bounce (`<>`).
    pub sender: &'a str,
    pub recipient: &'a str,
}

/// The file's bytes: `Return-Path:` and `Delivered-To:` first, any
/// `Return-Path:` of the message dropped, CRLF turned into LF.
pub fn local_form(envelope: Envelope<'_>, message: &[u8]) -> Vec<u8> {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let mut out = Vec::with_capacity(message.len() + 128);
    out.extend_from_slice(
        format!(
            "Return-Path: <{}>\nDelivered-To: {}\n",
            clean(envelope.sender),
            clean(envelope.recipient)
        )
        .as_bytes(),
    );
    let header_end = header_section_len(message);
    let mut skipping = false;
    for line in message[..header_end].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            skipping = is_field(line, "Return-Path");
        }
        if !skipping {
            push_lf(&mut out, line);
        }
    }
    for line in message[header_end..].split_inclusive(|&b| b == b'\n') {
        push_lf(&mut out, line);
    }
    out
}

/// Appends `line` with a final CRLF as LF.
fn push_lf(out: &mut Vec<u8>, line: &[u8]) {
    match line.strip_suffix(b"\r\n") {
        Some(text) => {
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        None => out.extend_from_slice(line),
    }
}

/// The Maildir directory for `recipient`: its lowercase address, with
/// anything that could leave the directory replaced.
pub fn mailbox_dir(root: &Path, recipient: &str) -> PathBuf {
    let mut name: String = recipient
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    root.join(name)
}

/// Writes `message` (as SMTP data, CRLF) into the Maildir of the
/// envelope's recipient, in its local form ([`local_form`]). Blocking.
pub fn deliver(
    root: &Path,
    envelope: Envelope<'_>,
    spool_id: &str,
    hostname: &str,
    message: &[u8],
) -> Result<PathBuf, DeliveryError> {
    let dir = mailbox_dir(root, envelope.recipient);
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| DeliveryError::Maildir { path, source }
    };
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(err(&d))?;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u32 = rand::random();
    let host: String = hostname
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    let name = format!(
        "{secs}.P{}Q{spool_id}R{random:08x}.{host}",
        std::process::id()
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err(&tmp))?;
    let written = file
        .write_all(&local_form(envelope, message))
        .and_then(|_| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(&tmp)(e));
    }
    fs::rename(&tmp, &new).map_err(err(&tmp))?;
    let new_dir = dir.join("new");
    fs::File::open(&new_dir)
        .and_then(|d| d.sync_all())
        .map_err(err(&new_dir))?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_of_the_recipient() {
        let root = tempfile::tempdir().unwrap();
        let envelope = Envelope {
            sender: "a@example.test",
            recipient: "Bob@Example.test",
        };
        let path = deliver(
            root.path(),
            envelope,
            "id1",
            "mx.test",
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .unwrap();
        assert!(path.starts_with(root.path().join("bob@example.test/new")));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "Return-Path: <a@example.test>\nDelivered-To: Bob@Example.test\nSubject: x\n\nhi\n"
        );
        assert_eq!(
            fs::read_dir(root.path().join("bob@example.test/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn local_form_has_lf_the_envelope_on_top_and_no_foreign_return_path() {
        let msg = b"Received: x\r\n\ty\r\nreturn-path : <forged@x>\r\n\t<folded>\r\nSubject: s\r\n\r\nReturn-Path: <in the body>\r\nbare\rcr\r\nlast";
        let bounce = Envelope {
            sender: "",
            recipient: "a@x\r\nBcc: evil@x",
        };
        assert_eq!(
            String::from_utf8(local_form(bounce, msg)).unwrap(),
            "Return-Path: <>\nDelivered-To: a@xBcc: evil@x\nReceived: x\n\ty\nSubject: s\n\nReturn-Path: <in the body>\nbare\rcr\nlast"
        );
    }

    #[test]
    fn recipient_cannot_escape_the_root() {
        let root = Path::new("/m");
        assert_eq!(
            mailbox_dir(root, "../../etc/passwd"),
            Path::new("/m/_.._.._etc_passwd")
        );
        assert_eq!(mailbox_dir(root, "..@x"), Path::new("/m/_..@x"));
        assert_eq!(mailbox_dir(root, ""), Path::new("/m/_"));
    }
}
