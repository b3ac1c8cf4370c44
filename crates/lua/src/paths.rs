//! The directories a script may reach: `kumo.secrets.load{key_path=…}`
//! reads files, and `sqlite.open` / `ATTACH` / `VACUUM INTO` open or create
//! them, as the server's user. Left open, a script (or a user name pasted
//! into a path) could read the TLS key or write anywhere the server may.
//! So every such path must lie, once `..` and symbolic links are resolved,
//! under one of the directories the config allows (`[lua] allowed_paths`;
//! by default the config file's directory and the data directory).
//!
//! A path is checked by resolving it ([`std::fs::canonicalize`]; for a file
//! that does not exist yet, its directory) and comparing whole components
//! with the allowed directories, resolved once at load. The resolved path
//! is the one then opened, so a link cannot point elsewhere after the
//! check unless someone rewrites the allowed directories themselves.

use std::path::{Path, PathBuf};

/// The allowed directories, resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedPaths(Vec<PathBuf>);

impl AllowedPaths {
    /// Resolves each directory now; one that does not exist is kept as
    /// written (it can match nothing until it exists and the script reloads).
    pub fn new(dirs: &[PathBuf]) -> AllowedPaths {
        let resolve = |dir: &PathBuf| {
            let dir = match dir.as_os_str().is_empty() {
                true => Path::new("."),
                false => dir.as_path(),
            };
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
        };
        AllowedPaths(dirs.iter().map(resolve).collect())
    }

    /// The resolved `path`, if it lies under an allowed directory.
    pub fn check(&self, path: &str) -> Result<PathBuf, PathError> {
        let refused = || PathError::Outside(path.to_string());
        let given = Path::new(path);
        let resolved = match std::fs::canonicalize(given) {
            Ok(resolved) => resolved,
            // Not there yet (a database to create): resolve its directory.
            Err(_) => {
                let name = given.file_name().ok_or_else(refused)?;
                let dir = match given.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                std::fs::canonicalize(dir)
                    .map_err(|source| PathError::Unresolvable {
                        path: path.to_string(),
                        source,
                    })?
                    .join(name)
            }
        };
        match self.0.iter().any(|dir| resolved.starts_with(dir)) {
            true => Ok(resolved),
            false => Err(refused()),
        }
    }
}

/// Why a script may not reach a path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("{0} is outside the directories the config allows ([lua] allowed_paths)")]
    Outside(String),
    #[error("{path}: {source}")]
    Unresolvable {
        path: String,
        source: std::io::Error,
    },
}
