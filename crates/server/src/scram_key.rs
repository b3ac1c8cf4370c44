//! The key that fake SCRAM secrets for unknown users are derived from.
//!
//! It lives in `<data_dir>/scram-fake-salt.key` (32 random bytes, mode
//! 0600), made on first start. A key that changed at each restart would
//! change every unknown user's salt while real users' salts stay the same,
//! which is exactly the difference that must not show.

use std::io::Write;
use std::path::Path;

use portcullis_sasl::Secret;

use crate::files::private_dir;

/// The key file could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("SCRAM key file {path}: {source}")]
pub struct ScramKeyError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

const FILE_NAME: &str = "scram-fake-salt.key";
const KEY_LEN: usize = 32;

pub(crate) fn load_or_create(data_dir: &Path) -> Result<Secret, ScramKeyError> {
    let path = data_dir.join(FILE_NAME);
    let error = |source| ScramKeyError {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(key) if key.len() == KEY_LEN => return Ok(Secret::new(key)),
        Ok(_) => {
            return Err(error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("expected {KEY_LEN} bytes; delete the file to make a new key"),
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    private_dir(data_dir).map_err(error)?;
    let key: [u8; KEY_LEN] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut file| file.write_all(&key).and_then(|()| file.sync_all()))
        .map_err(error)?;
    Ok(Secret::new(key.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("made");
        let second = load_or_create(dir.path()).expect("read");
        assert_eq!(first, second);
        std::fs::write(dir.path().join(FILE_NAME), b"short").expect("written");
        assert!(load_or_create(dir.path()).is_err());
    }
}
