//! Maildir delivery: one Maildir per recipient under the route's directory.
//!
//! `<path>/<recipient>/{tmp,new,cur}`. The file is written in `tmp/`,
//! fsynced, renamed into `new/`, and `new/` is fsynced, so a delivered
//! message is on disk before the spool entry goes. File names follow the
//! Maildir convention (`time.unique.host`) with the spool id and a random
//! part as the unique part. Blocking: call off the async workers.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::DeliveryError;

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

/// Writes `message` into the Maildir of `recipient`. Blocking.
pub fn deliver(
    root: &Path,
    recipient: &str,
    spool_id: &str,
    hostname: &str,
    message: &[u8],
) -> Result<PathBuf, DeliveryError> {
    let dir = mailbox_dir(root, recipient);
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
    let written = file.write_all(message).and_then(|_| file.sync_all());
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
        let path = deliver(
            root.path(),
            "Bob@Example.test",
            "id1",
            "mx.test",
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .unwrap();
        assert!(path.starts_with(root.path().join("bob@example.test/new")));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(
            fs::read_dir(root.path().join("bob@example.test/tmp"))
                .unwrap()
                .count(),
            0
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
