//! Where mem0-queue keeps its files, and their permissions.
//!
//! The data dir is `--data-dir`, else `MEM0_QUEUE_HOME` (both arrive as the
//! config key `data_dir`), else `$XDG_DATA_HOME/mem0-queue`, else
//! `~/.local/share/mem0-queue` (on macOS too). It is created 0700 before first
//! use, and every file in it is created 0600: it holds private memories.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::engine::config::Env;

/// The files of one data dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("no data dir: set --data-dir, MEM0_QUEUE_HOME or HOME")]
    NoHome,
    #[error("cannot create the data dir {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Paths {
    /// Resolves the data dir from the configured value or the XDG default.
    pub fn resolve(configured: Option<&Path>, env: &dyn Env) -> Result<Self, PathsError> {
        let data_dir = match configured {
            Some(p) => p.to_path_buf(),
            None => match env.var("XDG_DATA_HOME") {
                Some(x) => PathBuf::from(x).join("mem0-queue"),
                None => PathBuf::from(env.var("HOME").ok_or(PathsError::NoHome)?)
                    .join(".local/share/mem0-queue"),
            },
        };
        Ok(Self { data_dir })
    }

    /// Creates the data dir with mode 0700 if it is missing.
    pub fn ensure_dir(&self) -> Result<(), PathsError> {
        if !self.data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.data_dir)
                .map_err(|source| PathsError::Create {
                    path: self.data_dir.clone(),
                    source,
                })?;
            // `recursive` applies the mode to the leaf; make sure of it.
            let _ =
                std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    /// The queue database.
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("queue.db")
    }

    /// The compiled-policy cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    /// The worker log (the seed's `mem0_worker.log`).
    pub fn worker_log(&self) -> PathBuf {
        self.data_dir.join("mem0_worker.log")
    }
}
