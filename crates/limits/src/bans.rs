//! Bans: an address refused at the greeting until a time, with the reason.
//!
//! Without a shared backend, bans are kept in a small JSON file in the data
//! directory ([`BanFile`]) so that `portcullis ban list|add|del` sees and
//! changes the same bans a running server enforces: the server writes the
//! file when it bans and reloads it when it changes. The file is replaced
//! atomically (write, fsync, rename), so a reader never sees half of it.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LimitsError, Timestamp};

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub ip: IpAddr,
    /// Why, for the operator: "20 failed logins in 15m", "manual".
    pub reason: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it ends, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

impl Ban {
    /// Whether the ban still holds at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        now.millis() < self.expires_ms
    }

    /// Seconds left at `now`.
    pub fn remaining_secs(&self, now: Timestamp) -> u64 {
        self.expires_ms.saturating_sub(now.millis()) / 1000
    }
}

/// The ban list on disk. May block (file I/O): call it off async workers.
#[derive(Debug, Clone)]
pub struct BanFile {
    path: PathBuf,
}

impl BanFile {
    pub fn new(path: impl Into<PathBuf>) -> BanFile {
        BanFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every ban in the file (expired ones too); none if there is no file.
    pub fn load(&self) -> Result<Vec<Ban>, LimitsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.io_error(source)),
        };
        serde_json::from_str(&text).map_err(|e| LimitsError::BanFileSyntax {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Adds `ban` (replacing one on the same address) and drops expired
    /// ones.
    pub fn add(&self, ban: Ban, now: Timestamp) -> Result<(), LimitsError> {
        let mut bans = self.load()?;
        bans.retain(|b| b.ip != ban.ip && b.in_force(now));
        bans.push(ban);
        self.save(&bans)
    }

    /// Removes the ban on `ip`; whether there was one in force.
    pub fn remove(&self, ip: IpAddr, now: Timestamp) -> Result<bool, LimitsError> {
        let mut bans = self.load()?;
        let before = bans.iter().filter(|b| b.in_force(now)).count();
        bans.retain(|b| b.ip != ip && b.in_force(now));
        self.save(&bans)?;
        Ok(bans.len() < before)
    }

    fn save(&self, bans: &[Ban]) -> Result<(), LimitsError> {
        let text = serde_json::to_vec_pretty(bans).map_err(|e| LimitsError::BanFileSyntax {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            // Which addresses are banned, and why, is the operator's business.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: std::io::Error) -> LimitsError {
        LimitsError::BanFile {
            path: self.path.clone(),
            source,
        }
    }
}
