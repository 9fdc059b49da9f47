//! The daemon's files in the data dir: the lock that makes it one per user
//! and data dir, the record the other processes read (`status`, `serve`,
//! `doctor`, `dashboard`), and the bearer token of its MCP endpoint. The
//! daemon's delivery pace is the engine's delivery loop
//! ([`service`](crate::engine::service), [`Role::Daemon`](crate::engine::service::Role)).
//!
//! The lock is `daemon.lock`, an `flock(2)` (std's `File::try_lock`) held
//! for the daemon's whole life. The kernel drops it when the process ends,
//! however it ends (SIGKILL, a crash, a power cut), so a lock left by a dead
//! daemon is just a file nobody locks: the next daemon takes it over with no
//! clean-up and no pid guessing. The file's content (JSON: pid, start time,
//! addresses) is written by the holder right after it takes the lock, and
//! means something only while the lock is held. The file is never renamed
//! or removed: a reader opening the path afterwards would lock another
//! inode and see no daemon.
//!
//! A reader asks with a shared lock it drops at once (microseconds); a
//! daemon starting at that instant retries for [`CONTENDED_FOR`] before it
//! concludes another daemon holds the lock.
//!
//! This module never does network I/O.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::paths::Paths;

/// The lock file's name in the data dir.
pub const LOCK_FILE: &str = "daemon.lock";

/// The bearer token's file in the data dir (mode 0600).
pub const TOKEN_FILE: &str = "daemon.token";

/// How often the daemon looks for entries that other processes saved and
/// that are due: a save made by a `serve` window, the CLI or the hook
/// reaches the daemon within this (one indexed SQLite read; in WAL mode it
/// never blocks a writer). One second keeps save-to-delivery well under
/// the 2 s goal while costing nothing measurable when idle.
pub const POLL: Duration = Duration::from_secs(1);

/// How long a starting daemon retries a lock it finds taken: a reader
/// (`status`, a `serve` window) holds its shared lock for microseconds, a
/// running daemon forever.
const CONTENDED_FOR: Duration = Duration::from_millis(1_000);

/// The pause between two tries of a contended lock.
const CONTENDED_EVERY: Duration = Duration::from_millis(20);

/// Where the daemon's MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// The token's size: 32 bytes from the OS RNG, written as 64 hex digits.
const TOKEN_BYTES: usize = 32;

/// What a running daemon says about itself, in its lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    /// When it started, unix ms.
    pub since_ms: i64,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Its MCP endpoint, once it listens: `http://127.0.0.1:PORT/mcp`.
    #[serde(default)]
    pub mcp_url: Option<String>,
    /// Its dashboard's URL with the dashboard's token, once it listens
    /// (none when the daemon listens on a non-loopback address).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

/// What a look at the lock finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    NotRunning,
    /// A daemon holds the lock; its record, unless it is being written.
    Running(Option<Record>),
}

impl Seen {
    pub fn is_running(&self) -> bool {
        matches!(self, Seen::Running(_))
    }

    pub fn record(&self) -> Option<&Record> {
        match self {
            Seen::Running(r) => r.as_ref(),
            Seen::NotRunning => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot use the lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the token file {path} does not hold a token; delete it and start the daemon again (it writes a new one)"
    )]
    BadToken { path: PathBuf },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
    path: PathBuf,
}

/// The outcome of [`acquire`].
#[derive(Debug)]
pub enum Acquired {
    Ours(Lock),
    /// Another daemon holds the lock; its record if it could be read.
    Held(Option<Record>),
}

/// The MCP endpoint's URL for a daemon listening on `addr`: a wildcard
/// address (0.0.0.0, ::) is reached on loopback, an IPv6 address goes in
/// brackets.
pub fn mcp_url(addr: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{MCP_PATH}", SocketAddr::new(ip, addr.port()))
}

/// The lock file of a data dir.
pub fn lock_path(paths: &Paths) -> PathBuf {
    paths.data_dir.join(LOCK_FILE)
}

/// The token file of a data dir.
pub fn token_path(paths: &Paths) -> PathBuf {
    paths.data_dir.join(TOKEN_FILE)
}

/// Takes the daemon lock of this data dir (created 0600 if missing), or
/// says who holds it.
pub fn acquire(paths: &Paths) -> Result<Acquired, DaemonError> {
    let path = lock_path(paths);
    let err = |source| DaemonError::Lock {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    let deadline = std::time::Instant::now() + CONTENDED_FOR;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Acquired::Ours(Lock { file, path })),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(CONTENDED_EVERY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Ok(Acquired::Held(read_record(&path)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}

impl Lock {
    /// Writes `record` into the lock file (replacing what a previous daemon
    /// left there).
    pub fn publish(&mut self, record: &Record) -> Result<(), DaemonError> {
        let json = serde_json::to_vec(record).unwrap_or_default();
        let r = (|| {
            self.file.set_len(0)?;
            self.file.rewind()?;
            self.file.write_all(&json)?;
            self.file.sync_data()
        })();
        r.map_err(|source| DaemonError::Lock {
            path: self.path.clone(),
            source,
        })
    }
}

/// Whether a daemon holds this data dir's lock, and what it says about
/// itself. Writes nothing: a missing data dir or lock file is "not running".
pub fn probe(paths: &Paths) -> Seen {
    let path = lock_path(paths);
    let Ok(file) = std::fs::File::open(&path) else {
        return Seen::NotRunning;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Seen::NotRunning
        }
        Err(std::fs::TryLockError::WouldBlock) => Seen::Running(read_record(&path)),
        // A filesystem without locks: nobody can hold one there either.
        Err(std::fs::TryLockError::Error(_)) => Seen::NotRunning,
    }
}

/// The record in a lock file; `None` while it is being written.
fn read_record(path: &std::path::Path) -> Option<Record> {
    for _ in 0..3 {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(path)
            && f.read_to_string(&mut text).is_ok()
            && let Ok(r) = serde_json::from_str::<Record>(&text)
        {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The MCP bearer token: read from the token file, or made (32 random
/// bytes, hex) and written there with mode 0600 when there is none, so
/// every start of the daemon and every `install claude-code --http` use the
/// same one. A file readable by others is narrowed to 0600 (a warning says so).
pub fn token(paths: &Paths) -> Result<String, DaemonError> {
    paths.ensure_dir().map_err(|e| DaemonError::Token {
        path: token_path(paths),
        source: std::io::Error::other(e.to_string()),
    })?;
    if let Some(t) = read_token(paths)? {
        return Ok(t);
    }
    let path = token_path(paths);
    let err = |source| DaemonError::Token {
        path: path.clone(),
        source,
    };
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written whole under a temporary name, then linked into place: a
    // reader never sees half a token, and of two racing writers the first
    // link wins and the other reads it.
    let tmp = paths.data_dir.join(format!(
        ".{TOKEN_FILE}.{}.{}.tmp",
        std::process::id(),
        crate::engine::clock::now_ms()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_token(paths)?.ok_or(DaemonError::BadToken { path })
        }
        Err(e) => Err(err(e)),
    }
}

/// The token in the token file, if there is one; writes nothing, except
/// that a file readable by group or others is narrowed to 0600.
pub fn read_token(paths: &Paths) -> Result<Option<String>, DaemonError> {
    let path = token_path(paths);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DaemonError::Token { path, source }),
    };
    if let Ok(m) = std::fs::metadata(&path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the daemon token file was readable by others; it is now mode 0600");
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let t = text.trim();
    if t.len() < 32 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(DaemonError::BadToken { path });
    }
    Ok(Some(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let d = tempfile::tempdir().expect("a temp dir");
        let p = Paths {
            data_dir: d.path().join("data"),
        };
        (d, p)
    }

    #[test]
    fn one_holder_and_readers_see_it() {
        let (_d, p) = paths();
        assert_eq!(probe(&p), Seen::NotRunning);
        p.ensure_dir().expect("dir");
        let Acquired::Ours(mut lock) = acquire(&p).expect("acquire") else {
            panic!("the first acquire wins");
        };
        let rec = Record {
            pid: 42,
            since_ms: 1,
            version: "v".into(),
            mcp_url: Some("http://127.0.0.1:1/mcp".into()),
            dashboard_url: None,
        };
        lock.publish(&rec).expect("publish");
        assert_eq!(probe(&p), Seen::Running(Some(rec.clone())));
        match acquire(&p).expect("second acquire") {
            Acquired::Held(Some(r)) => assert_eq!(r, rec),
            other => panic!("held by the first: {other:?}"),
        }
        drop(lock);
        assert_eq!(probe(&p), Seen::NotRunning);
        assert!(matches!(acquire(&p).expect("again"), Acquired::Ours(_)));
    }

    #[test]
    fn mcp_urls() {
        let url = |a: &str| mcp_url(a.parse().expect("addr"));
        assert_eq!(url("0.0.0.0:9"), "http://127.0.0.1:9/mcp");
        assert_eq!(url("[::]:9"), "http://[::1]:9/mcp");
        assert_eq!(url("10.0.0.2:9"), "http://10.0.0.2:9/mcp");
    }

    #[test]
    fn the_token_is_made_once_with_mode_0600() {
        let (_d, p) = paths();
        assert_eq!(read_token(&p).expect("read"), None);
        let t = token(&p).expect("token");
        assert_eq!(t.len(), 64);
        assert_eq!(token(&p).expect("again"), t);
        let mode = std::fs::metadata(token_path(&p))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(token_path(&p), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert_eq!(read_token(&p).expect("read"), Some(t));
        let mode = std::fs::metadata(token_path(&p))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(token_path(&p), "x\n").expect("damage");
        assert!(matches!(read_token(&p), Err(DaemonError::BadToken { .. })));
    }
}
