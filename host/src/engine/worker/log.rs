//! The worker log (the seed's `mem0_worker.log`), in the data dir: one line
//! per run summary and one per failure. It holds ids, outcome classes and
//! statuses, never a memory's text or the API key. When it passes its size
//! cap it is rotated to `mem0_worker.log.1` (one generation kept).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct WorkerLog {
    path: PathBuf,
    max_bytes: u64,
    lock: Mutex<()>,
}

impl WorkerLog {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            lock: Mutex::new(()),
        }
    }

    /// Appends one line, prefixed with the UTC time. Failures to log are
    /// reported on stderr and otherwise ignored: logging never stops delivery.
    pub fn line(&self, text: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append(text) {
            tracing::warn!(error = %e, "cannot write the worker log");
        }
    }

    fn append(&self, text: &str) -> std::io::Result<()> {
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.len() >= self.max_bytes
        {
            let rotated = self.path.with_extension("log.1");
            std::fs::rename(&self.path, rotated)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        // One write per line, so lines from concurrent processes don't interleave.
        f.write_all(format!("{now} {text}\n").as_bytes())
    }
}
